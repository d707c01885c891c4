//! What the Kafka side reports: its metric names, labels and help text,
//! and the log events alarms match on (`event = "dead_letter"`). Declared
//! here and nowhere else.

pub const MESSAGES: &str = "imgpipe_kafka_messages_total";
pub const PAUSES: &str = "imgpipe_kafka_pauses_total";
/// Label `delivery`: `first` or `redelivered`.
pub const IMAGES: &str = "imgpipe_kafka_images_total";
/// Label `reason`: the dead-letter reason.
pub const DEAD_LETTERS: &str = "imgpipe_kafka_dead_letters_total";
pub const BAD_EVENTS: &str = "imgpipe_kafka_bad_events_total";
/// Labels `group`, `topic`, `partition`.
pub const CONSUMER_LAG: &str = "imgpipe_kafka_consumer_lag";

pub fn describe() {
    metrics::describe_counter!(MESSAGES, "Messages consumed from the image topic");
    metrics::describe_counter!(
        PAUSES,
        "Times the bridge waited for its in-flight byte budget"
    );
    metrics::describe_counter!(
        IMAGES,
        "Images stored from Kafka, by first delivery or redelivery"
    );
    metrics::describe_counter!(
        DEAD_LETTERS,
        "Messages sent to the dead-letter topic, by reason"
    );
    metrics::describe_counter!(
        BAD_EVENTS,
        "Forged or unreadable ImageReceived events refused"
    );
    metrics::describe_gauge!(
        CONSUMER_LAG,
        "Messages behind the end of each partition, by group"
    );
}

pub fn message() {
    metrics::counter!(MESSAGES).increment(1);
}

pub fn paused() {
    metrics::counter!(PAUSES).increment(1);
}

pub fn stored(redelivered: bool) {
    let delivery = if redelivered { "redelivered" } else { "first" };
    metrics::counter!(IMAGES, "delivery" => delivery).increment(1);
}

pub fn dead_letter(
    position: &dyn std::fmt::Display,
    reason: &'static str,
    detail: &dyn std::fmt::Display,
) {
    tracing::warn!(event = "dead_letter", %position, reason, %detail, "dead-lettering message");
    metrics::counter!(DEAD_LETTERS, "reason" => reason).increment(1);
}

pub fn bad_event(
    topic: &str,
    partition: i32,
    offset: i64,
    problem: Option<&dyn std::fmt::Display>,
) {
    match problem {
        Some(error) => {
            tracing::error!(%topic, partition, offset, %error, "forged ImageReceived event refused")
        }
        None => {
            tracing::error!(%topic, partition, offset, "unreadable ImageReceived event skipped")
        }
    }
    metrics::counter!(BAD_EVENTS).increment(1);
}

pub fn consumer_lag(group: &'static str, topic: &str, partition: i32, lag: i64) {
    metrics::gauge!(CONSUMER_LAG, "group" => group, "topic" => topic.to_owned(), "partition" => partition.to_string())
        .set(lag as f64);
}
