//! Points in time for runbooks: `now()`, certificate dates (RFC 3339 text such
//! as `cert.not_after`) and arithmetic in days, e.g. how many days a
//! certificate has left.
//!
//! ```rhai
//! let c = inspect_cert(node, "/etc/etcd/pki/server.crt");
//! let left = days_until(c.not_after);
//! if left < 30 { warn(`${node.name}: server certificate expires in ${left} days`); }
//! ```

use crate::executor::script_error;
use rhai::{Engine, EvalAltResult};
use std::fmt;
use time::format_description::well_known::Rfc3339;
use time::{Duration, OffsetDateTime, UtcOffset};

/// A point in time (UTC), as runbooks see it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(pub OffsetDateTime);

impl Timestamp {
    /// The current time.
    pub fn now() -> Self {
        Timestamp(OffsetDateTime::now_utc())
    }

    /// Parse RFC 3339 text (`2027-03-01T12:00:00Z`, what certificates' dates
    /// look like); the error names the text.
    pub fn parse(text: &str) -> Result<Self, String> {
        OffsetDateTime::parse(text.trim(), &Rfc3339)
            .map(|t| Timestamp(t.to_offset(UtcOffset::UTC)))
            .map_err(|e| {
                format!("`{text}` is not a date and time in RFC 3339 form (like 2027-03-01T12:00:00Z): {e}")
            })
    }

    /// Whole days from `self` until `then`, rounded down (negative when `then`
    /// is earlier): a certificate valid for 30 more days and 1 hour has 30.
    pub fn days_until(&self, then: &Timestamp) -> i64 {
        let secs = (then.0 - self.0).whole_seconds();
        secs.div_euclid(86_400)
    }

    /// This time plus `days` (negative: minus).
    pub fn add_days(&self, days: i64) -> Result<Self, String> {
        self.0
            .checked_add(Duration::days(days))
            .map(Timestamp)
            .ok_or_else(|| format!("{self} plus {days} days is out of range"))
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = self.0.format(&Rfc3339).map_err(|_| fmt::Error)?;
        f.write_str(&text)
    }
}

fn parsed(text: &str) -> Result<Timestamp, Box<EvalAltResult>> {
    Timestamp::parse(text).map_err(script_error)
}

/// Register `now()`, `timestamp(text)`, `days_until(...)` and the `Timestamp`
/// type's methods and operators.
pub fn register(engine: &mut Engine) {
    engine
        .register_type_with_name::<Timestamp>("Timestamp")
        .register_fn("to_string", |t: &mut Timestamp| t.to_string())
        .register_fn("print", |t: &mut Timestamp| t.to_string())
        .register_fn("to_debug", |t: &mut Timestamp| format!("Timestamp({t})"))
        .register_get("unix", |t: &mut Timestamp| t.0.unix_timestamp());

    crate::registration::function!(
        engine,
        /// The current time (UTC) as a `Timestamp`: compare it with `<`, `>`,
        /// subtract two (seconds), `t.add_days(n)`, `t.days_until(other)`;
        /// it prints as RFC 3339 (`2026-12-01T11:31:37Z`).
        fn "now"() -> "Timestamp" = Timestamp::now
    );
    crate::registration::function!(
        engine,
        /// A `Timestamp` from RFC 3339 text, e.g. a certificate's `not_after`:
        /// `timestamp(cert.not_after)`. Other text is an error naming it.
        fn "timestamp"("text: &str") -> "Timestamp" = |text: &str| parsed(text)
    );
    crate::registration::function!(
        engine,
        /// Whole days from now until `then` (RFC 3339 text such as `cert.not_after`,
        /// or a `Timestamp`), rounded down; negative once `then` has passed.
        ///
        /// ```rhai
        /// let left = days_until(inspect_cert("pki/etcd-ca.crt").not_after);
        /// if left < 30 { warn(`etcd-ca expires in ${left} days`); }
        /// ```
        fn "days_until"("then: &str") -> "i64" =
        |then: &str| -> Result<i64, Box<EvalAltResult>> {
            Ok(Timestamp::now().days_until(&parsed(then)?))
        }
    );
    crate::registration::documented! {
        /// Whole days from now (or from `t`, as `t.days_until(then)`) until `then`, a
        /// `Timestamp` or an RFC 3339 string; negative when `then` is past.
        ///
        /// ```rhai
        /// let left = now().days_until(cert.not_after);
        /// ```
        const UNTIL_DOC;
    }
    crate::registration::function!(
        engine,
        fn "days_until"("then: Timestamp") -> "i64" as UNTIL_DOC =
        |then: Timestamp| Timestamp::now().days_until(&then)
    );
    crate::registration::function!(
        engine,
        fn "days_until"("t: Timestamp", "then: Timestamp") -> "i64" as UNTIL_DOC =
        |t: &mut Timestamp, then: Timestamp| t.days_until(&then)
    );
    crate::registration::function!(
        engine,
        fn "days_until"("t: Timestamp", "then: &str") -> "i64" as UNTIL_DOC =
        |t: &mut Timestamp, then: &str| -> Result<i64, Box<EvalAltResult>> {
            Ok(t.days_until(&parsed(then)?))
        }
    );
    crate::registration::function!(
        engine,
        /// The time `days` days after `t` (before it when negative).
        ///
        /// ```rhai
        /// let soon = now().add_days(30);
        /// if cert_expiry < soon { warn("expires within 30 days"); }
        /// ```
        fn "add_days"("t: Timestamp", "days: i64") -> "Timestamp" =
        |t: &mut Timestamp, days: i64| -> Result<Timestamp, Box<EvalAltResult>> {
            t.add_days(days).map_err(script_error)
        }
    );
    // a - b: seconds between two times
    engine.register_fn("-", |a: Timestamp, b: Timestamp| {
        (a.0 - b.0).whole_seconds()
    });
    engine.register_fn("<", |a: Timestamp, b: Timestamp| a < b);
    engine.register_fn("<=", |a: Timestamp, b: Timestamp| a <= b);
    engine.register_fn(">", |a: Timestamp, b: Timestamp| a > b);
    engine.register_fn(">=", |a: Timestamp, b: Timestamp| a >= b);
    engine.register_fn("==", |a: Timestamp, b: Timestamp| a == b);
    engine.register_fn("!=", |a: Timestamp, b: Timestamp| a != b);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Timestamp {
        Timestamp::parse(s).unwrap()
    }

    #[test]
    fn days_are_whole_and_rounded_down() {
        let now = t("2026-12-01T12:00:00Z");
        let table = [
            ("2026-12-31T12:00:00Z", 30),
            ("2026-12-31T11:59:59Z", 29),
            ("2026-12-31T13:00:00+01:00", 30),
            ("2026-12-01T12:00:00Z", 0),
            ("2026-12-01T11:00:00Z", -1),
            ("2026-11-01T12:00:00Z", -30),
        ];
        for (then, days) in table {
            assert_eq!(now.days_until(&t(then)), days, "{then}");
        }
    }

    #[test]
    fn bad_text_is_named() {
        let e = Timestamp::parse("next tuesday").unwrap_err();
        assert!(e.starts_with("`next tuesday` is not a date"), "{e}");
    }

    #[test]
    fn add_days_and_display_in_utc() {
        let x = t("2026-12-01T13:00:00+01:00").add_days(31).unwrap();
        assert_eq!(x.to_string(), "2027-01-01T12:00:00Z");
    }
}
