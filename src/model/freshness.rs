//! The verdict-freshness rule, once: a verdict made at `made` vouches at `at` only while it is
//! no older than `max_verdict_age`. The planner (whether to scan again), the promote-time gate,
//! the record binding (the verdict's age when the record was made) and the audit (its age now)
//! all ask [`expired`]. Pure: the caller passes both instants.

use std::time::Duration;

use time::OffsetDateTime;

/// Whether a verdict made at `made` is older than `max_age` at `at` (exactly `max_age` old is
/// still fresh; a verdict dated after `at` has age zero here — refusing future dates is the
/// caller's choice).
pub fn expired(made: OffsetDateTime, at: OffsetDateTime, max_age: Duration) -> bool {
    at - made > time::Duration::try_from(max_age).unwrap_or(time::Duration::MAX)
}

/// How old a verdict made at `made` is at `at`, in whole seconds (zero if dated after `at`),
/// for messages.
pub fn age(made: OffsetDateTime, at: OffsetDateTime) -> Duration {
    Duration::from_secs((at - made).whole_seconds().max(0) as u64)
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;

    const WEEK: Duration = Duration::from_secs(7 * 86400);

    #[test]
    fn fresh_up_to_and_including_the_maximum_age() {
        let made = datetime!(2026-01-01 0:00 UTC);
        assert!(!expired(made, made, WEEK));
        assert!(!expired(made, datetime!(2026-01-08 0:00 UTC), WEEK));
        assert!(expired(made, datetime!(2026-01-08 0:00:01 UTC), WEEK));
    }

    #[test]
    fn a_future_date_is_not_expired_and_a_huge_maximum_never_overflows() {
        let made = datetime!(2026-01-02 0:00 UTC);
        assert!(!expired(made, datetime!(2026-01-01 0:00 UTC), WEEK));
        assert!(!expired(
            datetime!(1970-01-01 0:00 UTC),
            datetime!(2026-01-01 0:00 UTC),
            Duration::MAX
        ));
        assert_eq!(age(made, datetime!(2026-01-01 0:00 UTC)), Duration::ZERO);
        assert_eq!(
            age(made, datetime!(2026-01-02 1:00 UTC)),
            Duration::from_secs(3600)
        );
    }
}
