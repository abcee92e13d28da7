//! Trust decided from chain state (which images RA-TLS accepts, which
//! weights may serve) is read from two endpoints when more than one is
//! configured, and changes only when they agree: one endpoint's word alone,
//! a compromised or stale toncenter say, never widens or narrows whom a
//! node trusts.

use std::future::Future;

use crate::chain::ChainError;
use crate::toncenter::{Toncenter, ToncenterConfig};

/// What the endpoints said about one reading.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Agreement<T> {
    /// The two endpoints asked gave the same answer.
    Agreed(T),
    /// Only one endpoint is configured: its answer, on its word alone.
    Single(T),
    /// They answered differently: trust must not change.
    Disagreed {
        /// The endpoints and what each said, for logs and `/stats`.
        detail: String,
    },
    /// Fewer than two of several endpoints answered: trust must not change.
    Unconfirmed {
        /// Why.
        detail: String,
    },
}

impl<T> Agreement<T> {
    /// The answer to act on, if any.
    pub fn value(self) -> Option<T> {
        match self {
            Agreement::Agreed(v) | Agreement::Single(v) => Some(v),
            _ => None,
        }
    }

    /// One line for `/stats`.
    pub fn describe(&self) -> String {
        match self {
            Agreement::Agreed(_) => "two endpoints agree".into(),
            Agreement::Single(_) => "one endpoint configured: taken on its word alone".into(),
            Agreement::Disagreed { detail } => {
                format!("endpoints disagree, trust unchanged: {detail}")
            }
            Agreement::Unconfirmed { detail } => {
                format!("not confirmed by two endpoints, trust unchanged: {detail}")
            }
        }
    }
}

/// One client per endpoint, to ask them separately.
pub struct Corroborator {
    endpoints: Vec<(String, std::sync::Arc<Toncenter>)>,
}

impl std::fmt::Debug for Corroborator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.endpoints.iter().map(|(e, _)| e))
            .finish()
    }
}

impl Corroborator {
    /// Clients for each of `config`'s endpoints, each with `config`'s key,
    /// timeout and attempts.
    pub fn new(config: &ToncenterConfig) -> Result<Self, ChainError> {
        let endpoints = config
            .endpoints
            .iter()
            .map(|e| {
                let one = ToncenterConfig {
                    endpoints: vec![e.clone()],
                    ..config.clone()
                };
                Toncenter::new(one).map(|c| (e.clone(), std::sync::Arc::new(c)))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Corroborator { endpoints })
    }

    /// Reads with `read` from the endpoints, in order, until two answered
    /// (or all did, when fewer), and compares.
    pub async fn read<T, F, Fut, E>(&self, read: F) -> Agreement<T>
    where
        T: PartialEq + std::fmt::Debug,
        F: Fn(std::sync::Arc<Toncenter>) -> Fut,
        Fut: Future<Output = Result<T, E>>,
        E: std::fmt::Display,
    {
        let mut answers: Vec<(&str, T)> = Vec::new();
        let mut failures = Vec::new();
        for (endpoint, client) in &self.endpoints {
            match read(client.clone()).await {
                Ok(v) => answers.push((endpoint, v)),
                Err(e) => failures.push(format!("{endpoint}: {e}")),
            }
            if answers.len() == 2 {
                break;
            }
        }
        match (self.endpoints.len(), answers.len()) {
            (1, 1) => Agreement::Single(answers.remove(0).1),
            (_, 2) => {
                let (second, first) = (answers.remove(1), answers.remove(0));
                if first.1 == second.1 {
                    Agreement::Agreed(first.1)
                } else {
                    Agreement::Disagreed {
                        detail: format!(
                            "{} says {:?}, {} says {:?}",
                            first.0, first.1, second.0, second.1
                        ),
                    }
                }
            }
            _ => Agreement::Unconfirmed {
                detail: if failures.is_empty() {
                    "no endpoint answered".into()
                } else {
                    failures.join("; ")
                },
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn witnesses(n: u16) -> Corroborator {
        let endpoints = (1..=n)
            .map(|i| format!("http://127.0.0.1:{i}/api/v2"))
            .collect();
        Corroborator::new(&ToncenterConfig {
            endpoints,
            ..ToncenterConfig::single("http://127.0.0.1:1/api/v2")
        })
        .unwrap()
    }

    /// What each endpoint "answers", by its port: no network involved.
    async fn ask(c: &Corroborator, answers: &[Result<u32, &str>]) -> Agreement<u32> {
        c.read(|client| {
            let port: usize = client.endpoints()[0]
                .rsplit(':')
                .next()
                .and_then(|p| p.split('/').next())
                .and_then(|p| p.parse().ok())
                .unwrap();
            let a = answers[port - 1].map_err(str::to_string);
            async move { a }
        })
        .await
    }

    #[tokio::test]
    async fn trust_changes_only_on_two_agreeing_endpoints() {
        let two = witnesses(2);
        assert_eq!(ask(&two, &[Ok(7), Ok(7)]).await, Agreement::Agreed(7));
        let split = ask(&two, &[Ok(7), Ok(8)]).await;
        assert!(
            matches!(&split, Agreement::Disagreed { detail } if detail.contains("127.0.0.1:2")),
            "{split:?}"
        );
        assert_eq!(split.clone().value(), None, "no value to act on");
        let alone = ask(&two, &[Ok(7), Err("down")]).await;
        assert!(
            matches!(&alone, Agreement::Unconfirmed { detail } if detail.contains("down")),
            "{alone:?}"
        );
        assert!(alone.describe().contains("trust unchanged"));
        // A third endpoint stands in for one that failed.
        let three = witnesses(3);
        assert_eq!(
            ask(&three, &[Err("down"), Ok(5), Ok(5)]).await,
            Agreement::Agreed(5)
        );
        // With one endpoint configured, its word is all there is, and
        // /stats says so.
        let one = witnesses(1);
        let single = ask(&one, &[Ok(3)]).await;
        assert!(single.describe().contains("one endpoint"));
        assert_eq!(single.value(), Some(3));
    }
}
