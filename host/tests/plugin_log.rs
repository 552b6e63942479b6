//! Plugin output goes to the host log (tracing target `plugin`), not to the
//! host's stdout or stderr.
//!
//! One test in its own binary: it captures events with a thread-local
//! subscriber, and tracing caches per-callsite interest, so other tests
//! running in parallel threads under no subscriber could make it miss
//! events.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use sinkhost::config::PluginConfig;
use sinkhost::plugin::{PluginFault, PluginHost};

fn chaos() -> PathBuf {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/test-plugins/chaos.wasm");
    assert!(
        path.is_file(),
        "{} is missing: run `bash plugins/build.sh` (it builds the test components) and re-run the tests",
        path.display()
    );
    path
}

#[tokio::test]
async fn plugin_stderr_and_log_calls_become_host_log_events() {
    let logs = LogCapture::install();
    let temp = tempfile::tempdir().expect("tempdir");
    let config = PluginConfig {
        path: chaos(),
        grants: Default::default(),
        limits: Default::default(),
        cache_dir: Some(temp.path().to_path_buf()),
    };
    let host = PluginHost::load(&config, &serde_json::json!({"behaviour": "panic"})).expect("load");
    let fault = host.pool(1).write_batch(&[]).await.expect_err("panics");
    assert!(matches!(fault, PluginFault::Trap { .. }), "{fault:?}");

    let lines = logs.lines();
    // The guest's panic message, written to its stderr, is one log event.
    assert!(
        lines.iter().any(|l| l.contains("stream=stderr")
            && l.contains("chaos: panic requested")
            && l.contains("plugin=chaos")),
        "{lines:#?}"
    );
    // Its `log` import calls too, with the plugin's name.
    assert!(
        lines.iter().any(|l| l.contains("stream=log")
            && l.contains("chaos plugin ready")
            && l.contains("plugin=chaos")),
        "{lines:#?}"
    );
}

/// Collects `plugin` log events of this thread as `key=value ...` lines.
struct LogCapture {
    lines: Arc<Mutex<Vec<String>>>,
    _guard: tracing::subscriber::DefaultGuard,
}

impl LogCapture {
    fn install() -> Self {
        use tracing_subscriber::layer::SubscriberExt;
        let lines = Arc::new(Mutex::new(Vec::new()));
        let subscriber = tracing_subscriber::registry().with(Collector(Arc::clone(&lines)));
        Self {
            lines,
            _guard: tracing::subscriber::set_default(subscriber),
        }
    }

    fn lines(&self) -> Vec<String> {
        self.lines.lock().expect("lines").clone()
    }
}

struct Collector(Arc<Mutex<Vec<String>>>);

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Collector {
    fn on_event(
        &self,
        event: &tracing::Event<'_>,
        _ctx: tracing_subscriber::layer::Context<'_, S>,
    ) {
        if event.metadata().target() != "plugin" {
            return;
        }
        let mut line = String::new();
        event.record(&mut Fields(&mut line));
        self.0.lock().expect("lines").push(line);
    }
}

struct Fields<'a>(&'a mut String);

impl tracing::field::Visit for Fields<'_> {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        self.0.push_str(&format!("{}={:?} ", field.name(), value));
    }

    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        self.0.push_str(&format!("{}={} ", field.name(), value));
    }
}
