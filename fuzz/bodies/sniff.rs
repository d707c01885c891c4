/// The upload path's first look at untrusted bytes: magic-byte sniffing.
pub fn run(data: &[u8]) {
    let _ = lake::sniff::sniff(data);
}
