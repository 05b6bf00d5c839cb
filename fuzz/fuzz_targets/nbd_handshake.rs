#![no_main]
//! What an NBD server answers during the handshake: any bytes at all.
use std::io::{Cursor, Read, Write};

struct Server<'a> {
    says: Cursor<&'a [u8]>,
}

impl Read for Server<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.says.read(buf)
    }
}

impl Write for Server<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = isoroot_init::net::nbd::handshake(&mut Server { says: Cursor::new(data) }, "live");
});
