//! What one account (an API key, a Telegram user) may spend and how fast,
//! and what it has spent: the budget, the rate limits, the models, and the
//! monthly renewal.

use serde::{Deserialize, Serialize};

/// The limits an account runs under.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpendPolicy {
    /// Nanoton the account may spend (per month when it renews); `None`:
    /// no budget of its own (the client's balance still bounds it).
    #[serde(default)]
    pub budget_nanoton: Option<u64>,
    /// Requests it may start per minute.
    #[serde(default)]
    pub requests_per_minute: Option<u32>,
    /// Tokens (prompt and completion) its answers may take per minute.
    #[serde(default)]
    pub tokens_per_minute: Option<u64>,
    /// The models it may use; empty: every model.
    #[serde(default)]
    pub models: Vec<String>,
    /// Whether the budget starts afresh each calendar month (UTC).
    #[serde(default)]
    pub renewal: Renewal,
    /// Trust requirements its requests are held to (they may only tighten
    /// them): the app's tier.
    #[serde(
        default,
        skip_serializing_if = "cocoon_core::trust::TrustRequirements::is_empty"
    )]
    pub trust: cocoon_core::trust::TrustRequirements,
}

/// When a budget starts afresh.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Renewal {
    /// Never: the budget is spent once.
    #[default]
    Never,
    /// On the first day of every calendar month, UTC.
    Monthly,
}

impl std::str::FromStr for Renewal {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "never" => Ok(Renewal::Never),
            "monthly" => Ok(Renewal::Monthly),
            other => Err(format!(
                "renewal must be \"never\" or \"monthly\", found {other:?}"
            )),
        }
    }
}

/// What an account has spent and used.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Spending {
    /// The calendar month (UTC) `spent` counts in, for monthly budgets.
    pub month: Month,
    /// Nanoton spent in `month` (or ever, without renewal).
    pub spent_nanoton: u64,
    /// Nanoton spent since the account was made.
    pub lifetime_nanoton: u64,
    /// Answers completed.
    pub requests: u64,
    /// Prompt tokens of those answers.
    pub prompt_tokens: u64,
    /// Completion tokens of those answers.
    pub completion_tokens: u64,
    /// Requests refused by a limit (budget, rate, model).
    pub refused: u64,
}

impl Spending {
    /// What counts against the budget at `now` (Unix seconds): a monthly
    /// budget's spending from an earlier month no longer does.
    pub fn spent_at(&self, policy: &SpendPolicy, now: u64) -> u64 {
        match policy.renewal {
            Renewal::Monthly if self.month != Month::of(now) => 0,
            _ => self.spent_nanoton,
        }
    }

    /// Adds a completed answer's cost and tokens at `now`.
    pub fn record(
        &mut self,
        policy: &SpendPolicy,
        now: u64,
        cost: u64,
        prompt: u64,
        completion: u64,
    ) {
        let month = Month::of(now);
        if policy.renewal == Renewal::Monthly && self.month != month {
            self.spent_nanoton = 0;
        }
        self.month = month;
        self.spent_nanoton = self.spent_nanoton.saturating_add(cost);
        self.lifetime_nanoton = self.lifetime_nanoton.saturating_add(cost);
        self.requests += 1;
        self.prompt_tokens = self.prompt_tokens.saturating_add(prompt);
        self.completion_tokens = self.completion_tokens.saturating_add(completion);
    }
}

/// A calendar month, UTC.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Month {
    /// The year.
    pub year: i32,
    /// 1 to 12 (0 only in the default, before any spending).
    pub month: u32,
}

impl Month {
    /// The month containing `unix` seconds.
    pub fn of(unix: u64) -> Month {
        let (year, month, _, _) = cocoon_core::utc_date(unix);
        Month {
            year: year as i32,
            month,
        }
    }

    /// Unix seconds at the start of the next month: when a monthly budget
    /// renews.
    pub fn next_start(self) -> u64 {
        let (y, m) = if self.month >= 12 {
            (self.year + 1, 1)
        } else {
            (self.year, self.month + 1)
        };
        (days_from_civil(y, m, 1).max(0) as u64) * 86_400
    }
}

impl std::fmt::Display for Month {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:04}-{:02}", self.year, self.month)
    }
}

/// Days since 1970-01-01 of a civil date (the inverse of
/// [`cocoon_core::utc_date`]; Howard Hinnant's days_from_civil).
fn days_from_civil(y: i32, m: u32, d: u32) -> i64 {
    let y = i64::from(y) - i64::from(m <= 2);
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Dates checked against `date -u -d @N`.
    #[test]
    fn months_of_known_instants() {
        assert_eq!(
            Month::of(0),
            Month {
                year: 1970,
                month: 1
            }
        );
        // 2024-02-29T23:59:59Z, a leap day.
        assert_eq!(
            Month::of(1_709_251_199),
            Month {
                year: 2024,
                month: 2
            }
        );
        // 2024-03-01T00:00:00Z.
        assert_eq!(
            Month::of(1_709_251_200),
            Month {
                year: 2024,
                month: 3
            }
        );
        // 2026-12-31T23:59:59Z and the next second.
        assert_eq!(
            Month::of(1_798_761_599),
            Month {
                year: 2026,
                month: 12
            }
        );
        assert_eq!(
            Month::of(1_798_761_600),
            Month {
                year: 2027,
                month: 1
            }
        );
        assert_eq!(
            Month {
                year: 2026,
                month: 12
            }
            .next_start(),
            1_798_761_600
        );
        assert_eq!(
            Month {
                year: 2024,
                month: 2
            }
            .next_start(),
            1_709_251_200
        );
    }

    #[test]
    fn a_monthly_budget_starts_afresh_and_a_one_off_does_not() {
        let monthly = SpendPolicy {
            budget_nanoton: Some(100),
            renewal: Renewal::Monthly,
            ..Default::default()
        };
        let once = SpendPolicy {
            renewal: Renewal::Never,
            ..monthly.clone()
        };
        let dec = 1_796_083_200; // 2026-12-01
        let jan = 1_798_761_600; // 2027-01-01
        let mut m = Spending::default();
        m.record(&monthly, dec, 70, 5, 6);
        assert_eq!(m.spent_at(&monthly, dec + 10), 70);
        assert_eq!(m.spent_at(&monthly, jan), 0, "a new month owes nothing");
        m.record(&monthly, jan, 20, 1, 1);
        assert_eq!(
            (m.spent_nanoton, m.lifetime_nanoton, m.requests),
            (20, 90, 2)
        );
        let mut o = Spending::default();
        o.record(&once, dec, 70, 0, 0);
        o.record(&once, jan, 20, 0, 0);
        assert_eq!(o.spent_at(&once, jan), 90);
    }
}
