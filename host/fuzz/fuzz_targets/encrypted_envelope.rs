//! The encrypted payload envelope parser: any bytes must give a plaintext or
//! a clean error, never a panic, with and without a v2 context.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sinkhost::security::encryption::{decrypt, KeyRing};

fuzz_target!(|data: &[u8]| {
    let mut keys = KeyRing::new();
    let _ = keys.insert("enc-1", [0x40; 32]);
    let _ = decrypt(data, &keys, None);
    let _ = decrypt(data, &keys, Some(("subject", "STREAM", 7)));
});
