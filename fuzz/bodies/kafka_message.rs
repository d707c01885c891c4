/// A Kafka message's value, key and one header are the producer's bytes:
/// the envelope (raw image, JSON base64, claim-check) is parsed from them.
pub fn run(data: &[u8]) {
    let (head, payload) = data.split_at(data.len().min(16));
    let (key, header) = head.split_at(head.len() / 2);
    let headers = [("image-id", header)];
    let msg = kafka_bridge::message::Message {
        topic: "images",
        partition: 0,
        offset: 0,
        key: Some(key),
        headers: &headers,
        payload: Some(payload),
    };
    let _ = kafka_bridge::message::parse(&msg, 1 << 20);
}
