#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| prefork_lab_fuzz::request_model::check(data));
