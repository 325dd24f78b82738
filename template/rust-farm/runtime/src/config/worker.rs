//! The pull-loop keys of one worker replica (`FARM_CONCURRENCY`,
//! `FARM_FETCH_*`, `FARM_NAK_DELAY*`, `FARM_DRAIN_GRACE`,
//! `FARM_SHED_EXPIRED`, `FARM_INSTANCE`).

use std::time::Duration;

use super::Parser;

/// Pull-loop settings of one replica.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerConfig {
    /// Tasks run at once.
    pub concurrency: usize,
    /// Most tasks requested in one pull.
    pub fetch_batch: usize,
    /// Expiry of one pull request.
    pub fetch_expires: Duration,
    /// Redelivery delay after the first failure (doubles per delivery).
    pub nak_delay: Duration,
    /// Cap of the redelivery delay.
    pub nak_delay_max: Duration,
    /// Time allowed to drain on SIGTERM.
    pub drain_grace: Duration,
    /// Dead-letter tasks already past their deadline instead of running them.
    pub shed_expired: bool,
    /// Instance name written into results and dead letters.
    pub instance: String,
}

/// The worker setting that sheds tasks already past their deadline unrun.
pub const SHED_EXPIRED: &str = "FARM_SHED_EXPIRED";

impl Parser<'_> {
    pub(super) fn worker(&mut self) -> WorkerConfig {
        let ms = Duration::from_millis;
        let concurrency = self.int("FARM_CONCURRENCY", 1, 1, 4096) as usize;
        let fetch_batch = self.int(
            "FARM_FETCH_BATCH",
            concurrency as i64,
            1,
            concurrency as i64,
        ) as usize;
        let fetch_expires = self.duration(
            "FARM_FETCH_EXPIRES",
            ms(1000),
            ms(10),
            Duration::from_secs(60),
        );
        let nak_delay = self.duration(
            "FARM_NAK_DELAY",
            Duration::from_secs(1),
            Duration::ZERO,
            Duration::from_secs(3600),
        );
        let nak_delay_max = self.duration(
            "FARM_NAK_DELAY_MAX",
            Duration::from_secs(30),
            Duration::ZERO,
            Duration::from_secs(3600),
        );
        let drain_grace = self.duration(
            "FARM_DRAIN_GRACE",
            Duration::from_secs(25),
            Duration::ZERO,
            Duration::from_secs(3600),
        );
        let shed_expired = self.boolean(SHED_EXPIRED).unwrap_or(false);
        let instance = self
            .get("FARM_INSTANCE")
            .or_else(|| self.get("HOSTNAME"))
            .map(str::to_owned)
            .unwrap_or_else(|| {
                let id = uuid::Uuid::new_v4().simple().to_string();
                format!("worker-{}", &id[..8])
            });
        WorkerConfig {
            concurrency,
            fetch_batch,
            fetch_expires,
            nak_delay,
            nak_delay_max: nak_delay_max.max(nak_delay),
            drain_grace,
            shed_expired,
            instance,
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::config::tests::map;
    use crate::config::{Config, ConfigError};

    /// `FARM_SHED_EXPIRED` is off by default, read as a boolean, and a
    /// value that is not one is refused naming the key and the value.
    #[test]
    fn shedding_expired_tasks_is_an_opt_in_boolean() {
        let with = |v: Option<&str>| {
            let mut m = map(&[("FARM_NAME", "demo")]);
            m.extend(v.map(|v| ("FARM_SHED_EXPIRED".to_owned(), v.to_owned())));
            Config::from_map(&m)
        };
        assert!(!with(None).unwrap().worker.shed_expired);
        assert!(with(Some("on")).unwrap().worker.shed_expired);
        assert!(!with(Some("0")).unwrap().worker.shed_expired);
        let e = with(Some("sometimes")).unwrap_err().to_string();
        assert!(
            e.contains("FARM_SHED_EXPIRED") && e.contains("sometimes"),
            "{e}"
        );
    }

    #[test]
    fn fetch_batch_is_bounded_by_concurrency() {
        let e = Config::from_map(&map(&[
            ("FARM_NAME", "f"),
            ("FARM_CONCURRENCY", "2"),
            ("FARM_FETCH_BATCH", "3"),
        ]))
        .unwrap_err();
        assert_eq!(
            e.0,
            vec![ConfigError::OutOfRange {
                key: "FARM_FETCH_BATCH",
                value: 3,
                min: 1,
                max: 2
            }]
        );
    }
}
