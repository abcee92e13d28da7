#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| cocoon_fuzz::run("voucher", data));
