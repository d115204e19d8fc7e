//! The gateway's configuration file: any text is either a configuration or
//! an error that says why, never a panic.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    let _ = flotilla_gateway::Config::parse(text);
});
