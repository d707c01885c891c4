//! Retention on Kafka. Messages are data too: the source topic holds
//! images, the dead-letter topic holds why a message was refused and where it
//! is (never its bytes), the events topic
//! holds ids and hashes. Kafka deletes whole segments, so a message can
//! live up to `retention.ms + segment.ms` (plus the broker's check
//! interval); both must fit in the retention period. The topics the bridge
//! creates (DLQ, events) get settings that do; the source topic is the
//! customer's, so it is checked and reported.

use std::{sync::Mutex, time::Duration};

use crate::KafkaConfig;
use rdkafka::{
    ClientContext,
    admin::{AdminClient, AdminOptions, NewTopic, ResourceSpecifier, TopicReplication},
    config::RDKafkaLogLevel,
    error::{KafkaError, RDKafkaErrorCode},
};
use serde::Serialize;

/// Kafka's own default for `segment.ms` (and for `retention.ms`): 7 days.
const KAFKA_DEFAULT_MS: i64 = 7 * 24 * 3600 * 1000;
/// How late the broker's retention check may run (`log.retention.check.interval.ms`).
const CHECK_SLACK_MS: i64 = 5 * 60 * 1000;

pub type Admin = AdminClient<AdminContext>;

pub fn admin(cfg: &KafkaConfig) -> Result<Admin, KafkaError> {
    crate::client::base(cfg).create_with_context(AdminContext::default())
}

/// Remembers the brokers' last complaint, because an admin call that
/// cannot authenticate or verify the certificate only ever times out.
#[derive(Debug, Default)]
pub struct AdminContext {
    last_error: Mutex<Option<String>>,
}

impl ClientContext for AdminContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        crate::client::log(level, fac, log_message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        tracing::warn!(target: "librdkafka", error = %error, "{reason}");
        if let Ok(mut last) = self.last_error.lock() {
            *last = Some(reason.to_owned());
        }
    }
}

/// Can we reach and authenticate to the brokers? Asked once at start,
/// with a client whose log and error events are read, so a wrong
/// password or an untrusted certificate is named rather than timing out.
pub async fn reach(cfg: &KafkaConfig) -> Result<(), String> {
    use rdkafka::producer::{BaseProducer, Producer};
    let producer: BaseProducer<AdminContext> = crate::client::base(cfg)
        .create_with_context(AdminContext::default())
        .map_err(|e| e.to_string())?;
    let timeout = cfg.timeout;
    tokio::task::spawn_blocking(move || {
        let fetched = producer.client().fetch_metadata(None, timeout);
        let Err(e) = fetched else { return Ok(()) };
        // Errors and log lines wait in the main queue until polled.
        producer.poll(Duration::from_millis(100));
        let said = producer
            .context()
            .last_error
            .lock()
            .ok()
            .and_then(|l| l.clone());
        Err(match said {
            Some(said) => format!("{e} (the brokers said: {said})"),
            None => e.to_string(),
        })
    })
    .await
    .map_err(|e| e.to_string())?
}

impl rdkafka::producer::ProducerContext for AdminContext {
    type DeliveryOpaque = ();
    fn delivery(&self, _: &rdkafka::message::DeliveryResult<'_>, _: Self::DeliveryOpaque) {}
}

/// An admin call's failure, with what the brokers last said.
#[derive(Debug, thiserror::Error)]
#[error("{kafka}{}", .broker.as_deref().map(|b| format!(" (the brokers said: {b})")).unwrap_or_default())]
pub struct AdminError {
    kafka: KafkaError,
    broker: Option<String>,
}

impl AdminError {
    pub fn new(admin: &Admin, kafka: KafkaError) -> Self {
        let broker = admin
            .inner()
            .context()
            .last_error
            .lock()
            .ok()
            .and_then(|last| last.clone());
        Self { kafka, broker }
    }
}

fn options(cfg: &KafkaConfig) -> AdminOptions {
    AdminOptions::new()
        .request_timeout(Some(cfg.timeout))
        .operation_timeout(Some(cfg.timeout))
}

/// Settings for a topic we own: segments roll hourly (or sooner for short
/// periods), retention leaves room for the last segment and the check, and
/// the broker's clock — not the producer's — stamps messages.
pub fn owned_topic_settings(period: Duration) -> Vec<(&'static str, String)> {
    let period_ms = i64::try_from(period.as_millis()).unwrap_or(KAFKA_DEFAULT_MS);
    let segment_ms = (period_ms / 8).clamp(1000, 3600 * 1000);
    let retention_ms = (period_ms - segment_ms - CHECK_SLACK_MS).max(1000);
    vec![
        ("retention.ms", retention_ms.to_string()),
        ("segment.ms", segment_ms.to_string()),
        ("message.timestamp.type", "LogAppendTime".to_owned()),
    ]
}

/// Create the DLQ and events topics unless they exist.
pub async fn ensure_owned(
    admin: &Admin,
    cfg: &KafkaConfig,
    period: Duration,
) -> Result<(), KafkaError> {
    let settings = owned_topic_settings(period);
    let topics: Vec<NewTopic<'_>> = [&cfg.dlq_topic, &cfg.events_topic]
        .into_iter()
        .map(|name| {
            settings.iter().fold(
                NewTopic::new(name, cfg.partitions, TopicReplication::Fixed(1)),
                |t, (k, v)| t.set(k, v),
            )
        })
        .collect();
    for result in admin.create_topics(&topics, &options(cfg)).await? {
        match result {
            Ok(name) => tracing::info!(topic = %name, "created topic"),
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, code)) => {
                return Err(KafkaError::AdminOp(code)).inspect_err(|_| {
                    tracing::error!(topic = %name, error = %code, "could not create topic");
                });
            }
        }
    }
    Ok(())
}

/// One topic's retention as the broker reports it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct TopicRetention {
    pub topic: String,
    pub retention_ms: Option<i64>,
    pub segment_ms: Option<i64>,
    /// Why messages could outlive the period, if they could.
    pub problem: Option<String>,
}

/// Read `retention.ms` and `segment.ms` of each topic and judge them.
pub async fn check(
    admin: &Admin,
    cfg: &KafkaConfig,
    topics: &[&str],
    period: Duration,
) -> Result<Vec<TopicRetention>, KafkaError> {
    let specs: Vec<ResourceSpecifier<'_>> =
        topics.iter().map(|t| ResourceSpecifier::Topic(t)).collect();
    let results = admin.describe_configs(&specs, &options(cfg)).await?;
    let mut out = Vec::with_capacity(topics.len());
    for (topic, result) in topics.iter().zip(results) {
        let resource = match result {
            Ok(r) => r,
            // Not there yet (auto-created on first produce), or not ours to
            // read: nothing known, so nothing promised.
            Err(code) => {
                out.push(TopicRetention {
                    topic: (*topic).to_owned(),
                    retention_ms: None,
                    segment_ms: None,
                    problem: Some(format!("its settings could not be read: {code}")),
                });
                continue;
            }
        };
        let entries = resource.entry_map();
        let number = |name: &str| {
            entries
                .get(name)
                .and_then(|e| e.value.as_deref())
                .and_then(|v| v.parse::<i64>().ok())
        };
        let (retention_ms, segment_ms) = (number("retention.ms"), number("segment.ms"));
        out.push(TopicRetention {
            topic: (*topic).to_owned(),
            retention_ms,
            segment_ms,
            problem: judge(retention_ms, segment_ms, period),
        });
    }
    Ok(out)
}

/// `None` when every message is gone within `period`.
pub fn judge(
    retention_ms: Option<i64>,
    segment_ms: Option<i64>,
    period: Duration,
) -> Option<String> {
    let period_ms = i64::try_from(period.as_millis()).unwrap_or(i64::MAX);
    let Some(retention) = retention_ms else {
        return Some(
            "retention.ms is not set on the topic, so the broker default applies (Kafka's: 7 days, plus a segment)"
                .into(),
        );
    };
    if retention < 0 {
        return Some(format!(
            "retention.ms = {retention}: messages are kept forever"
        ));
    }
    let segment = segment_ms.unwrap_or(KAFKA_DEFAULT_MS);
    let worst = retention
        .saturating_add(segment)
        .saturating_add(CHECK_SLACK_MS);
    (worst > period_ms).then(|| {
        format!(
            "messages may live {} (retention.ms {retention} + segment.ms {segment}{} + the broker's 5-minute check), more than the retention period {}",
            humanize(worst),
            if segment_ms.is_none() { " (default)" } else { "" },
            humanize(period_ms),
        )
    })
}

fn humanize(ms: i64) -> String {
    let secs = ms.max(0) / 1000;
    let (days, hours, minutes) = (secs / 86_400, secs % 86_400 / 3600, secs % 3600 / 60);
    format!("{days}d {hours}h {minutes}m")
}

#[cfg(test)]
mod tests {
    use super::*;

    const WEEK: Duration = Duration::from_secs(7 * 86_400);

    #[test]
    fn owned_settings_pass_their_own_check() {
        for period in [WEEK, Duration::from_secs(3600), Duration::from_secs(86_400)] {
            let s = owned_topic_settings(period);
            let get = |k: &str| {
                s.iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| v.parse().unwrap())
            };
            assert_eq!(
                judge(get("retention.ms"), get("segment.ms"), period),
                None,
                "{period:?}"
            );
        }
    }

    #[test]
    fn judges_missing_forever_and_too_long() {
        assert!(judge(None, None, WEEK).unwrap().contains("not set"));
        assert!(judge(Some(-1), None, WEEK).unwrap().contains("forever"));
        // Exactly 7 days of retention still leaves a segment behind.
        let p = judge(Some(KAFKA_DEFAULT_MS), Some(3_600_000), WEEK).unwrap();
        assert!(p.contains("7d 1h 5m"), "{p}");
        assert!(
            judge(Some(6 * 86_400_000), None, WEEK)
                .unwrap()
                .contains("(default)")
        );
        assert_eq!(judge(Some(6 * 86_400_000), Some(3_600_000), WEEK), None);
    }
}
