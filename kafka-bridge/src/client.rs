//! Client settings shared by every consumer, producer and admin client.

use lake::config::KafkaConfig;
use rdkafka::ClientConfig;

pub fn base(cfg: &KafkaConfig) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set(
        "bootstrap.servers",
        cfg.brokers.as_deref().unwrap_or_default(),
    )
    .set("client.id", "imgpipe")
    .set("socket.timeout.ms", millis(cfg.timeout))
    .set("log_level", "4");
    c
}

pub fn producer(cfg: &KafkaConfig) -> ClientConfig {
    let mut c = base(cfg);
    c.set("acks", "all")
        .set("message.timeout.ms", millis(cfg.timeout))
        .set("linger.ms", "5");
    c
}

/// Manual commits only (after the image is durable); a new group starts
/// at the earliest offset so nothing produced before it first ran is lost.
pub fn consumer(cfg: &KafkaConfig, group: &str, max_inflight_bytes: u64) -> ClientConfig {
    let mut c = base(cfg);
    let session = cfg.session_timeout.as_millis().max(1000);
    // The local prefetch queue is bounded too, at a quarter of the budget.
    let queued_kib = (max_inflight_bytes / 4 / 1024).clamp(1024, 2_097_151);
    let per_partition = cfg.max_image_bytes.clamp(1 << 20, 1 << 30);
    let fetch = per_partition.max(50 << 20);
    c.set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", session.to_string())
        .set("heartbeat.interval.ms", (session / 6).max(100).to_string())
        .set("queued.max.messages.kbytes", queued_kib.to_string())
        .set("fetch.message.max.bytes", per_partition.to_string())
        // librdkafka wants the whole fetch and the socket buffer at least as
        // large as one partition's share.
        .set("fetch.max.bytes", fetch.to_string())
        .set("receive.message.max.bytes", (fetch + (1 << 20)).to_string())
        // Topics created after subscribing are found within seconds.
        .set("topic.metadata.refresh.interval.ms", "10000");
    c
}

fn millis(d: std::time::Duration) -> String {
    d.as_millis().max(1).to_string()
}
