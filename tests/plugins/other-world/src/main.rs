//! A valid WebAssembly component that is not a sink: a plain WASI command.

fn main() {
    println!("I am a command, not a sink");
}
