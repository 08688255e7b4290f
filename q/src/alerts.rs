//! Usage alerts: `q collect --follow --alert 'project=example invocations>100000/1h' --webhook
//! URL`. After each collection, each rule's figure is summed over the project's records whose
//! windows started in the last WINDOW; a rule whose sum goes above its threshold fires, and
//! clears when the sum is back at or under it. Each change is posted once to the webhook and
//! noted in the store only once the webhook acknowledged it (a 2xx answer), so a rule neither
//! posts on every collection nor, after a restart, again; a post that fails is tried again
//! after the next collection.

use std::fmt;
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::json;

use crate::events::{FIGURES, Figure};
use crate::store::{Store, StoreError};

/// The longest window a rule may sum over.
pub const MAX_WINDOW: Duration = Duration::from_secs(31 * 24 * 3600);

/// One alert rule: `project=NAME FIGURE>THRESHOLD/WINDOW`.
#[derive(Clone)]
pub struct Rule {
    /// The rule as written: its key in the store.
    pub text: String,
    /// The project watched.
    pub project: String,
    /// The figure summed ([`FIGURES`]).
    pub figure: &'static str,
    get: Figure,
    /// The sum above which the rule fires.
    pub threshold: u64,
    /// How far back records are summed.
    pub window: Duration,
}

impl fmt::Debug for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl FromStr for Rule {
    type Err = String;

    fn from_str(text: &str) -> Result<Rule, String> {
        let usage = "write project=NAME FIGURE>THRESHOLD/WINDOW, like `project=example \
                     invocations>100000/1h`";
        let parts: Vec<&str> = text.split_whitespace().collect();
        let [scope, condition] = parts[..] else {
            return Err(format!("`{text}` is not an alert rule: {usage}"));
        };
        let project = scope
            .strip_prefix("project=")
            .filter(|p| !p.is_empty())
            .ok_or_else(|| format!("`{scope}` does not name a project: {usage}"))?;
        let (figure, rest) = condition
            .split_once('>')
            .ok_or_else(|| format!("`{condition}` has no `>`: {usage}"))?;
        let (threshold, window) = rest
            .split_once('/')
            .ok_or_else(|| format!("`{condition}` has no `/WINDOW`: {usage}"))?;
        let Some((name, get)) = FIGURES.iter().find(|(name, _)| *name == figure) else {
            let known: Vec<&str> = FIGURES.iter().map(|(n, _)| *n).collect();
            return Err(format!("no figure `{figure}`; the figures are {}", known.join(", ")));
        };
        let digits = threshold.replace('_', "");
        let threshold: u64 = digits
            .parse()
            .ok()
            .filter(|_| digits.bytes().all(|b| b.is_ascii_digit()))
            .ok_or_else(|| format!("the threshold `{threshold}` is not a whole number"))?;
        let window = humantime::parse_duration(window)
            .map_err(|e| format!("the window `{window}` is not a duration like 1h: {e}"))?;
        if window < Duration::from_secs(1) || window > MAX_WINDOW {
            return Err(format!("the window `{}` is not between 1s and 31 days", rest));
        }
        Ok(Rule {
            text: format!(
                "project={project} {figure}>{threshold}/{}",
                humantime::format_duration(window)
            ),
            project: project.to_string(),
            figure: name,
            get: *get,
            threshold,
            window,
        })
    }
}

/// A rule that fired or cleared.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Change {
    /// The rule.
    pub rule: String,
    /// True when it fired, false when it cleared.
    pub firing: bool,
    /// The sum over the window.
    pub value: u128,
}

/// Why a check failed.
#[derive(Debug, thiserror::Error)]
pub enum AlertError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The HTTP client could not be made.
    #[error(transparent)]
    Client(#[from] crate::push::PushError),
}

/// Rules and where their changes are posted.
#[derive(Debug, Clone)]
pub struct Alerts {
    rules: Vec<Rule>,
    webhook: reqwest::Url,
    client: reqwest::Client,
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

impl Alerts {
    /// Rules posting to `webhook`.
    pub fn new(rules: Vec<Rule>, webhook: reqwest::Url) -> Result<Alerts, AlertError> {
        let client = crate::push::client(Duration::from_secs(10))?;
        Ok(Alerts { rules, webhook, client })
    }

    /// The sum of `rule`'s figure over its window ending at `now_ms`.
    async fn value(store: &Store, rule: &Rule, now_ms: u64) -> Result<u128, StoreError> {
        let from = now_ms.saturating_sub(rule.window.as_millis() as u64);
        let mut sum = 0u128;
        store
            .records(from, now_ms + 1, Some(&rule.project), |record| {
                sum += u128::from((rule.get)(&record.usage));
                Ok(())
            })
            .await?;
        Ok(sum)
    }

    /// Checks every rule now; posts and notes each change. `report` hears of each change and
    /// of posts that failed (tried again at the next check).
    pub async fn check(
        &self,
        store: &Store,
        mut report: impl FnMut(&str),
    ) -> Result<Vec<Change>, AlertError> {
        let now = now_ms();
        let mut changes = Vec::new();
        for rule in &self.rules {
            let value = Alerts::value(store, rule, now).await?;
            let firing = value > u128::from(rule.threshold);
            if firing == store.alert_firing(&rule.text).await? {
                continue;
            }
            let state = if firing { "firing" } else { "cleared" };
            let at = humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_millis(now));
            let body = json!({
                "text": format!("q alert {state}: {} ({} = {value})", rule.text, rule.figure),
                "alert": rule.text,
                "state": state,
                "project": rule.project,
                "figure": rule.figure,
                "value": value.to_string(),
                "threshold": rule.threshold,
                "window_seconds": rule.window.as_secs(),
                "at": at.to_string(),
            });
            let answer = self
                .client
                .post(self.webhook.clone())
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.to_string())
                .send()
                .await;
            match answer {
                Ok(answer) if answer.status().is_success() => {
                    store.set_alert(&rule.text, firing).await?;
                    report(&format!("alert {state}: {} ({} = {value})", rule.text, rule.figure));
                    changes.push(Change { rule: rule.text.clone(), firing, value });
                }
                Ok(answer) => report(&format!(
                    "alert {state}: {}: the webhook answered {}; posted again after the next collection",
                    rule.text,
                    answer.status()
                )),
                Err(_) => report(&format!(
                    "alert {state}: {}: the webhook could not be reached; posted again after the next collection",
                    rule.text
                )),
            }
        }
        Ok(changes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_parse_strictly_and_name_what_is_wrong() {
        let rule: Rule = "project=example invocations>100_000/1h".parse().unwrap();
        assert_eq!(rule.project, "example");
        assert_eq!(rule.figure, "invocations");
        assert_eq!(rule.threshold, 100_000);
        assert_eq!(rule.window, Duration::from_secs(3600));
        assert_eq!(rule.text, "project=example invocations>100000/1h");
        for (bad, says) in [
            ("invocations>10/1h", "not an alert rule"),
            ("project= invocations>10/1h", "does not name a project"),
            ("project=p invocations<10/1h", "has no `>`"),
            ("project=p invocations>10", "has no `/WINDOW`"),
            ("project=p invokes>10/1h", "no figure `invokes`"),
            ("project=p invocations>-1/1h", "not a whole number"),
            ("project=p invocations>10/soon", "not a duration"),
            ("project=p invocations>10/90d", "between 1s and 31 days"),
        ] {
            let error = bad.parse::<Rule>().unwrap_err();
            assert!(error.contains(says), "{bad}: {error}");
        }
    }
}
