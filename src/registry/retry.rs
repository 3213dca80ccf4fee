//! Retries of transient registry failures: exponential backoff with jitter (backon), at
//! most a few attempts, honouring the registry's `Retry-After` (seconds or an HTTP date).
//!
//! An overall deadline bounds one operation with all its attempts (the registry's
//! `timeout`): no attempt starts, and no backoff sleeps, past it; an attempt still running
//! at the deadline is cut off. So a dead registry fails within `timeout`, however many
//! attempts the policy allows.
//!
//! Only requests whose body can be sent again are retried here (no body, manifests, small
//! byte bodies). A streamed blob upload consumes its source stream and cannot be replayed:
//! it fails once with a transient error, and the caller (apply) retries the whole copy.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use backon::{ExponentialBuilder, Retryable};

use super::error::RegistryError;

/// How many times and how patiently to retry.
#[derive(Clone, Debug)]
pub struct RetryPolicy {
    /// Total attempts including the first.
    pub max_attempts: usize,
    pub min_delay: Duration,
    pub max_delay: Duration,
    /// The longest `Retry-After` honoured; longer requests are capped to this.
    pub max_retry_after: Duration,
    /// The overall deadline of one operation, every attempt and backoff included
    /// (`None`: attempts alone bound it).
    pub budget: Option<Duration>,
    /// Where the retries of one registry are counted: its first retry is a warning, the
    /// others are debug lines and a summary at the end ([`RetryTally::summary`]). `None`:
    /// every retry is a warning.
    pub tally: Option<Arc<RetryTally>>,
}

/// The retries of one registry, counted by cause ([`RegistryError::retry_cause`]).
#[derive(Debug, Default)]
pub struct RetryTally {
    causes: Mutex<BTreeMap<String, usize>>,
}

impl RetryTally {
    /// Count one retry for `cause`; true when it is the registry's first.
    pub fn record(&self, cause: &str) -> bool {
        let mut causes = self.causes.lock().expect("retry tally lock");
        let first = causes.is_empty();
        *causes.entry(cause.to_string()).or_default() += 1;
        first
    }

    /// `registry `x`: 14 requests retried (429 TOOMANYREQUESTS ×10, connection reset ×4)`,
    /// causes by count then name; `None` when nothing was retried.
    pub fn summary(&self, registry: &str) -> Option<String> {
        let causes = self.causes.lock().expect("retry tally lock");
        summarise(registry, &causes)
    }
}

/// The summary line of a registry's retries by cause (see [`RetryTally::summary`]).
fn summarise(registry: &str, causes: &BTreeMap<String, usize>) -> Option<String> {
    let total: usize = causes.values().sum();
    if total == 0 {
        return None;
    }
    let mut by_count: Vec<(&String, &usize)> = causes.iter().collect();
    by_count.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    let parts: Vec<String> = by_count
        .iter()
        .map(|(cause, n)| format!("{cause} ×{n}"))
        .collect();
    let noun = if total == 1 { "request" } else { "requests" };
    Some(format!(
        "registry `{registry}`: {total} {noun} retried ({})",
        parts.join(", ")
    ))
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 5,
            min_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(30),
            max_retry_after: Duration::from_secs(120),
            budget: None,
            tally: None,
        }
    }
}

impl RetryPolicy {
    /// No retries at all (tests, or callers that retry themselves).
    pub fn none() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 1,
            ..RetryPolicy::default()
        }
    }

    /// Run `op` until it succeeds, fails with a non-transient error, attempts run out, or
    /// (with a `budget`) the deadline passes.
    pub async fn run<T, F, Fut>(&self, what: &str, op: F) -> Result<T, RegistryError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, RegistryError>>,
    {
        self.run_for("", what, op).await
    }

    /// [`RetryPolicy::run`] for an operation on `registry` (named by a deadline error).
    /// When the budget runs out mid-attempt the error is `Deadline`, carrying the previous
    /// attempt's error; when it runs out between attempts, the last error stands.
    pub async fn run_for<T, F, Fut>(
        &self,
        registry: &str,
        what: &str,
        mut op: F,
    ) -> Result<T, RegistryError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, RegistryError>>,
    {
        let label = if registry.is_empty() {
            what.to_string()
        } else {
            format!("{what} on `{registry}`")
        };
        let Some(budget) = self.budget else {
            return self.attempts(registry, &label, op, None).await;
        };
        let deadline = tokio::time::Instant::now() + budget;
        let last: std::sync::Mutex<Option<String>> = std::sync::Mutex::new(None);
        // The deadline error already says what failed where: keep only the cause.
        let prefix = format!("failed to {what} on `{registry}`: ");
        let guarded = || {
            let fut = op();
            let (last, prefix) = (&last, &prefix);
            async move {
                match tokio::time::timeout_at(deadline, fut).await {
                    Ok(Err(e)) => {
                        let msg = e.to_string();
                        let cause = msg.strip_prefix(prefix.as_str()).unwrap_or(&msg);
                        *last.lock().expect("last error") = Some(cause.to_string());
                        Err(e)
                    }
                    Ok(ok) => ok,
                    Err(_) => Err(RegistryError::Deadline {
                        registry: registry.to_string(),
                        what: what.to_string(),
                        after: budget,
                        last: last.lock().expect("last error").take(),
                    }),
                }
            }
        };
        self.attempts(registry, &label, guarded, Some(deadline))
            .await
    }

    async fn attempts<T, F, Fut>(
        &self,
        registry: &str,
        what: &str,
        op: F,
        deadline: Option<tokio::time::Instant>,
    ) -> Result<T, RegistryError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, RegistryError>>,
    {
        let backoff = ExponentialBuilder::default()
            .with_jitter()
            .with_min_delay(self.min_delay)
            .with_max_delay(self.max_delay)
            .with_max_times(self.max_attempts.saturating_sub(1));
        let cap = self.max_retry_after;
        op.retry(backoff)
            .when(RegistryError::is_transient)
            .adjust(move |e: &RegistryError, next| {
                // `next` is None when attempts are exhausted: keep it so. No sleep that
                // would end past the deadline: the last error stands.
                next.map(|d| e.retry_after().map(|ra| ra.min(cap)).unwrap_or(d))
                    .filter(|d| deadline.is_none_or(|dl| tokio::time::Instant::now() + *d < dl))
            })
            .notify(|e: &RegistryError, d: Duration| {
                let secs = d.as_secs_f64();
                let first = self.tally.as_ref().map(|t| t.record(&e.retry_cause()));
                // Most errors already say "failed to <what> on `<registry>`".
                let e = match e.registry() {
                    Some(_) => e.to_string(),
                    None => format!("{what}: {e}"),
                };
                match first {
                    Some(true) => tracing::warn!(
                        "{e}; retrying in {secs:.1}s (further retries on `{registry}` are \
                         summarised at the end)"
                    ),
                    Some(false) => tracing::debug!("{e}; retrying in {secs:.1}s"),
                    None => tracing::warn!("{e}; retrying in {secs:.1}s"),
                }
            })
            .await
    }
}

/// Parse a `Retry-After` value: delta seconds or an HTTP date (a past date means now).
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    let v = value.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = httpdate::parse_http_date(v).ok()?;
    Some(
        when.duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    fn fast() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 4,
            min_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(2),
            max_retry_after: Duration::from_millis(5),
            budget: None,
            tally: None,
        }
    }

    fn api(status: u16, retry_after: Option<Duration>) -> RegistryError {
        RegistryError::Api {
            registry: "r".into(),
            what: "w".into(),
            status,
            code: "X".into(),
            message: String::new(),
            retry_after,
        }
    }

    #[test]
    fn retry_after_forms() {
        assert_eq!(parse_retry_after("7"), Some(Duration::from_secs(7)));
        assert_eq!(parse_retry_after(" 0 "), Some(Duration::ZERO));
        let future = SystemTime::now() + Duration::from_secs(100);
        let d = parse_retry_after(&httpdate::fmt_http_date(future)).unwrap();
        assert!(
            d > Duration::from_secs(90) && d <= Duration::from_secs(100),
            "{d:?}"
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon"), None);
    }

    #[tokio::test]
    async fn retries_transient_then_succeeds() {
        let n = AtomicUsize::new(0);
        let r = fast()
            .run("op", || async {
                let i = n.fetch_add(1, Ordering::SeqCst);
                if i < 2 {
                    Err(api(503, Some(Duration::from_secs(3600))))
                } else {
                    Ok(i)
                }
            })
            .await
            .unwrap();
        assert_eq!(r, 2);
    }

    #[tokio::test]
    async fn a_budget_bounds_every_attempt_and_backoff() {
        // First attempt fails fast (transient), the second hangs: cut at the deadline, the
        // error says so and carries the first attempt's cause.
        let policy = RetryPolicy {
            max_attempts: 100,
            budget: Some(Duration::from_millis(300)),
            ..fast()
        };
        let n = AtomicUsize::new(0);
        let r: Result<(), _> = policy
            .run_for("reg", "get manifest x:1", || async {
                if n.fetch_add(1, Ordering::SeqCst) == 0 {
                    Err(api(503, None))
                } else {
                    std::future::pending().await
                }
            })
            .await;
        let e = r.unwrap_err();
        assert!(matches!(e, RegistryError::Deadline { .. }), "{e}");
        assert_eq!(
            e.to_string(),
            "failed to get manifest x:1 on `reg`: timed out: gave up after 300ms (timeout); \
             last attempt: failed to w on `r`: 503 X: "
        );
        assert!(!e.is_transient());
        // Transient failures only: attempts stop when the next pause would pass the deadline,
        // and the last error stands.
        let policy = RetryPolicy {
            max_attempts: 1000,
            min_delay: Duration::from_millis(40),
            max_delay: Duration::from_millis(40),
            budget: Some(Duration::from_millis(200)),
            ..fast()
        };
        let n = AtomicUsize::new(0);
        let r: Result<(), _> = policy
            .run_for("reg", "op", || async {
                n.fetch_add(1, Ordering::SeqCst);
                Err(api(503, None))
            })
            .await;
        assert!(matches!(r, Err(RegistryError::Api { status: 503, .. })));
        assert!(
            n.load(Ordering::SeqCst) < 10,
            "{}",
            n.load(Ordering::SeqCst)
        );
    }

    #[tokio::test]
    async fn a_registry_tally_counts_retries_by_cause() {
        let tally = Arc::new(RetryTally::default());
        let policy = RetryPolicy {
            tally: Some(tally.clone()),
            ..fast()
        };
        assert_eq!(tally.summary("r"), None);
        for _ in 0..2 {
            let n = AtomicUsize::new(0);
            policy
                .run_for("r", "op", || async {
                    match n.fetch_add(1, Ordering::SeqCst) {
                        0 | 1 => Err(api(429, None)),
                        2 => Err(RegistryError::Truncated {
                            registry: "r".into(),
                            what: "w".into(),
                            expected: 2,
                            received: 1,
                        }),
                        _ => Ok(()),
                    }
                })
                .await
                .unwrap();
        }
        assert_eq!(
            tally.summary("r").as_deref(),
            Some("registry `r`: 6 requests retried (429 X ×4, body ended early ×2)")
        );
        // The first retry is the registry's first, once.
        assert!(!tally.record("429 X"));
        let one = RetryTally::default();
        assert!(one.record("connection reset"));
        assert_eq!(
            one.summary("hub").as_deref(),
            Some("registry `hub`: 1 request retried (connection reset ×1)")
        );
    }

    #[tokio::test]
    async fn fails_fast_on_permanent_and_stops_after_max() {
        let n = AtomicUsize::new(0);
        let r: Result<(), _> = fast()
            .run("op", || async {
                n.fetch_add(1, Ordering::SeqCst);
                Err(api(404, None))
            })
            .await;
        assert!(r.is_err());
        assert_eq!(n.load(Ordering::SeqCst), 1);

        let n = AtomicUsize::new(0);
        let r: Result<(), _> = fast()
            .run("op", || async {
                n.fetch_add(1, Ordering::SeqCst);
                Err(api(429, None))
            })
            .await;
        assert!(r.is_err());
        assert_eq!(n.load(Ordering::SeqCst), 4);
    }
}
