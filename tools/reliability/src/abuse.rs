//! The abuse corpus's harness: the data file (`corpus/abuse.json`) and its small text
//! format, and the recorder that checks each case's status against the contract, then
//! the server's health (`/healthz` 200 and a normal login).

use std::collections::HashMap;
use std::path::PathBuf;

use serde::Deserialize;
use serde_json::Value;
use testkit::Reply;
use testkit::api::reqwest;

use crate::cx::Cx;
use crate::rawsock::RawReply;
use crate::report::{Outcome, Tally};
use crate::status_key;

/// A text of the corpus: a string, a list of texts, a repetition or raw bytes.
#[derive(Clone, Debug, Deserialize)]
#[serde(untagged)]
pub enum Text {
    Plain(String),
    List(Vec<Text>),
    Repeat { repeat: Box<Text>, times: usize },
    Bytes { bytes: Vec<u8> },
}

impl Text {
    /// The bytes, with `$I` (inside a repetition) and the placeholders in `vars` replaced.
    pub fn expand(&self, vars: &HashMap<&str, String>) -> Vec<u8> {
        let mut out = Vec::new();
        self.expand_into(vars, None, &mut out);
        out
    }

    fn expand_into(&self, vars: &HashMap<&str, String>, index: Option<usize>, out: &mut Vec<u8>) {
        match self {
            Text::Plain(s) => {
                let mut s = s.clone();
                if let Some(i) = index {
                    s = s.replace("$I", &i.to_string());
                }
                for (name, value) in vars {
                    s = s.replace(name, value);
                }
                out.extend_from_slice(s.as_bytes());
            }
            Text::List(parts) => parts.iter().for_each(|p| p.expand_into(vars, index, out)),
            Text::Repeat { repeat, times } => {
                (0..*times).for_each(|i| repeat.expand_into(vars, Some(i), out))
            }
            Text::Bytes { bytes } => out.extend_from_slice(bytes),
        }
    }

    /// As a string (lossy: only for texts meant as header values or path segments).
    pub fn string(&self, vars: &HashMap<&str, String>) -> String {
        String::from_utf8_lossy(&self.expand(vars)).into_owned()
    }
}

/// A request body and the statuses it may get.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BodyCase {
    pub name: String,
    pub body: Text,
    /// Absent: `application/json`; `null`: no `Content-Type` at all.
    #[serde(default = "json_type")]
    pub content_type: Option<String>,
    pub expect: Vec<u16>,
}

fn json_type() -> Option<String> {
    Some("application/json".into())
}

#[derive(Debug, Deserialize)]
pub struct PasswordSize {
    pub bytes: usize,
    pub expect: u16,
}

#[derive(Debug, Deserialize)]
pub struct Named {
    pub name: String,
    #[serde(default)]
    pub head: String,
    #[serde(default)]
    pub header: Option<Value>,
    #[serde(default)]
    pub value: String,
    #[serde(default)]
    pub id: Option<Text>,
    #[serde(default)]
    pub expect: Vec<u16>,
}

/// `corpus/abuse.json`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Corpus {
    pub login_bodies: Vec<BodyCase>,
    pub register_bodies: Vec<BodyCase>,
    pub password_sizes: Vec<PasswordSize>,
    pub offsite_next: Vec<String>,
    pub header_injection: Vec<Named>,
    pub csrf: Vec<Named>,
    pub cookies: Vec<Named>,
    pub revoke_ids: Vec<Named>,
    pub asset_paths: Vec<String>,
}

impl Corpus {
    pub fn load() -> anyhow::Result<Corpus> {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("corpus/abuse.json");
        let text = std::fs::read_to_string(&path)?;
        serde_json::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
    }
}

/// A header text of a case (`header` is a text in JSON form).
pub fn header_text(named: &Named, vars: &HashMap<&str, String>) -> anyhow::Result<String> {
    let value = named.header.clone().unwrap_or(Value::Null);
    let text: Text = serde_json::from_value(value)?;
    Ok(text.string(vars))
}

/// The scenario's results so far, and the health checks between cases.
pub struct Abuse<'a> {
    pub cx: &'a Cx,
    pub out: Outcome,
    pub tally: Tally,
    pub health_user: usize,
    pub unhealthy: Vec<String>,
}

pub fn fmt_expect(expect: &[u16]) -> String {
    expect
        .iter()
        .map(u16::to_string)
        .collect::<Vec<_>>()
        .join("/")
}

impl Abuse<'_> {
    /// Checks one case's status against `expect`, plus `extra` (empty when fine), then
    /// the server's health. A failure body must be the contract's `{"error": "..."}`.
    pub async fn case<T>(
        &mut self,
        name: &str,
        expect: &[u16],
        r: Result<Reply<T>, reqwest::Error>,
        extra: impl FnOnce(&Reply<T>) -> String,
    ) {
        self.tally.add("abuse", &status_key(&r));
        let (ok, detail) = match &r {
            Ok(reply) => {
                let problem = extra(reply);
                let json_ok = reply.status < 400
                    || reply.header("content-type") != Some("application/json")
                    || reply.json().get("error").is_some_and(Value::is_string);
                let sep = if problem.is_empty() { "" } else { ": " };
                (
                    expect.contains(&reply.status) && problem.is_empty() && json_ok,
                    format!("{}{sep}{problem}", reply.status),
                )
            }
            Err(e) => (false, format!("no answer: {e}")),
        };
        self.out
            .check(format!("{name} → {}", fmt_expect(expect)), ok, detail);
        self.health(name).await;
    }

    /// A raw-socket case: one of the `expect` statuses.
    pub fn raw_case(&mut self, name: &str, expect: &[u16], r: anyhow::Result<RawReply>) {
        let (ok, detail) = match &r {
            Ok(raw) => {
                self.tally.add(
                    "abuse",
                    &raw.status.map_or("closed".into(), |s| s.to_string()),
                );
                let status = raw.status.map_or("no answer".into(), |s| s.to_string());
                (
                    raw.status.is_some_and(|s| expect.contains(&s)),
                    format!("{status} after {:.1} s", raw.elapsed.as_secs_f64()),
                )
            }
            Err(e) => (false, format!("{e:#}")),
        };
        self.out
            .check(format!("{name} → {}", fmt_expect(expect)), ok, detail);
    }

    /// `/healthz` 200 and a normal login (then its logout) still work.
    pub async fn health(&mut self, after: &str) {
        let api = self.cx.client();
        let h = api.healthz().await;
        self.tally.add("health", &status_key(&h));
        let u = self.cx.ledger.user(self.health_user);
        let l = api.login(&u.email, &u.password).await;
        self.tally.add("health", &status_key(&l));
        let healthy = h.as_ref().is_ok_and(|r| r.status == 200)
            && l.as_ref()
                .is_ok_and(|r| r.status == 200 && r.token().is_some());
        if let Some(token) = l.as_ref().ok().and_then(Reply::token) {
            let out = self.cx.api.from_ip("10.0.0.1").logout(&token).await;
            self.tally.add("health", &status_key(&out));
        }
        if !healthy {
            let h = h.map_or_else(|e| format!("{e:?}"), |r| r.status.to_string());
            let l = l.map_or_else(|e| format!("{e:?}"), |r| r.status.to_string());
            self.unhealthy
                .push(format!("{after} (healthz {h}, login {l})"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texts_expand_repetitions_bytes_and_placeholders() {
        let text: Text = serde_json::from_str(
            r#"[{"repeat": ["c$I=", {"repeat": "j", "times": 2}, "; "], "times": 3}, "$COOKIE=$TOKEN", {"bytes": [255]}]"#,
        )
        .expect("a text");
        let vars = HashMap::from([
            ("$COOKIE", "session".to_owned()),
            ("$TOKEN", "t".to_owned()),
        ]);
        assert_eq!(
            text.expand(&vars),
            b"c0=jj; c1=jj; c2=jj; session=t\xff".to_vec()
        );
    }

    #[test]
    fn the_corpus_loads() {
        let corpus = Corpus::load().expect("corpus/abuse.json parses");
        let deep = &corpus.login_bodies[6];
        assert_eq!(deep.name, "deep nesting: 30 000 arrays");
        assert_eq!(deep.body.expand(&HashMap::new()).len(), 60_000);
        assert!(corpus.login_bodies.iter().any(|c| c.content_type.is_none()));
        assert_eq!(corpus.cookies.len(), 15);
    }
}
