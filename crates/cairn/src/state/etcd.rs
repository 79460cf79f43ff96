//! The few etcd v3 calls team state needs — range, transactions, leases —
//! over the JSON gateway with [`EtcdClient`], callable from any thread.
//!
//! Callers are synchronous (the journal, the lock's keepalive thread, the
//! CLI), some of them on a tokio worker thread of the run's own runtime,
//! where blocking on another runtime panics. So each call runs on a short
//! helper thread that blocks on this client's own one-worker runtime.

use super::StateError;
use crate::primitives::etcd::EtcdClient;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use serde_json::{json, Value};

/// A stored key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub key: String,
    pub value: Vec<u8>,
    pub create_revision: u64,
    /// The lease it is attached to (decimal), `0` for none.
    pub lease: String,
}

/// One comparison of a transaction.
#[derive(Clone, Debug)]
pub enum Compare {
    /// The key does not exist (create_revision == 0).
    Absent(String),
    /// The key holds exactly this value.
    Value(String, Vec<u8>),
}

/// One operation of a transaction.
#[derive(Clone, Debug)]
pub enum Op {
    Put {
        key: String,
        value: Vec<u8>,
        lease: Option<String>,
    },
    Delete(String),
    Get(String),
}

/// The gateway client of a state etcd.
pub struct Kv {
    client: EtcdClient,
    rt: tokio::runtime::Runtime,
    /// The `--state` URL, for errors.
    url: String,
}

fn number(v: &Value) -> u64 {
    match v {
        Value::String(s) => s.parse().unwrap_or(0),
        Value::Number(n) => n.as_u64().unwrap_or(0),
        _ => 0,
    }
}

fn text_number(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => "0".into(),
    }
}

fn entry(kv: &Value) -> Entry {
    let bytes = |k: &str| {
        B64.decode(kv[k].as_str().unwrap_or_default())
            .unwrap_or_default()
    };
    Entry {
        key: String::from_utf8_lossy(&bytes("key")).into_owned(),
        value: bytes("value"),
        create_revision: number(&kv["create_revision"]),
        lease: text_number(&kv["lease"]),
    }
}

fn range_end(prefix: &str) -> Vec<u8> {
    let mut end = prefix.as_bytes().to_vec();
    // prefixes here end in `/`, never in 0xff
    if let Some(b) = end.last_mut() {
        *b += 1;
    }
    end
}

fn op_json(op: &Op) -> Value {
    match op {
        Op::Put { key, value, lease } => {
            let mut put = json!({"key": B64.encode(key), "value": B64.encode(value)});
            if let Some(l) = lease {
                put["lease"] = json!(l);
            }
            json!({ "request_put": put })
        }
        Op::Delete(key) => json!({"request_delete_range": {"key": B64.encode(key)}}),
        Op::Get(key) => json!({"request_range": {"key": B64.encode(key)}}),
    }
}

fn compare_json(c: &Compare) -> Value {
    match c {
        Compare::Absent(key) => json!({
            "key": B64.encode(key), "target": "CREATE", "result": "EQUAL", "create_revision": "0"
        }),
        Compare::Value(key, v) => json!({
            "key": B64.encode(key), "target": "VALUE", "result": "EQUAL", "value": B64.encode(v)
        }),
    }
}

impl Kv {
    pub fn new(client: EtcdClient, url: &str) -> Result<Kv, StateError> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .map_err(|e| StateError::Etcd(format!("cannot start a runtime for {url}: {e}")))?;
        Ok(Kv {
            client,
            rt,
            url: url.into(),
        })
    }

    /// POST `path` with `body` to the first endpoint that answers.
    fn call(&self, path: &'static str, body: Value) -> Result<Value, StateError> {
        let client = &self.client;
        let fut = client.first(|url| {
            let body = body.clone();
            async move { client.post(&url, path, body).await }
        });
        let out = std::thread::scope(|s| {
            s.spawn(|| self.rt.block_on(fut))
                .join()
                .map_err(|_| StateError::Etcd("etcd call panicked".into()))
        })?;
        out.map_err(|e| StateError::Etcd(format!("state etcd {} ({path}): {e}", self.url)))
    }

    /// The key, if it exists.
    pub fn get(&self, key: &str) -> Result<Option<Entry>, StateError> {
        let v = self.call("/v3/kv/range", json!({"key": B64.encode(key)}))?;
        Ok(v["kvs"].as_array().and_then(|a| a.first()).map(entry))
    }

    /// Every key under `prefix` (which ends in `/`), in key order.
    pub fn list(&self, prefix: &str) -> Result<Vec<Entry>, StateError> {
        let v = self.call(
            "/v3/kv/range",
            json!({"key": B64.encode(prefix), "range_end": B64.encode(range_end(prefix))}),
        )?;
        Ok(v["kvs"]
            .as_array()
            .map(|a| a.iter().map(entry).collect())
            .unwrap_or_default())
    }

    /// Run `success` if every comparison holds, else `failure`. Returns
    /// whether it succeeded and the entries the `Get`s of the branch read.
    pub fn txn(
        &self,
        compare: &[Compare],
        success: &[Op],
        failure: &[Op],
    ) -> Result<(bool, Vec<Entry>), StateError> {
        let v = self.call(
            "/v3/kv/txn",
            json!({
                "compare": compare.iter().map(compare_json).collect::<Vec<_>>(),
                "success": success.iter().map(op_json).collect::<Vec<_>>(),
                "failure": failure.iter().map(op_json).collect::<Vec<_>>(),
            }),
        )?;
        let succeeded = v["succeeded"].as_bool().unwrap_or(false);
        let mut read = Vec::new();
        for r in v["responses"].as_array().into_iter().flatten() {
            for kv in r["response_range"]["kvs"].as_array().into_iter().flatten() {
                read.push(entry(kv));
            }
        }
        Ok((succeeded, read))
    }

    /// A new lease of `ttl` seconds; its ID (decimal).
    pub fn grant(&self, ttl: u64) -> Result<String, StateError> {
        let v = self.call("/v3/lease/grant", json!({"TTL": ttl.to_string()}))?;
        let id = text_number(&v["ID"]);
        if id == "0" {
            return Err(StateError::Etcd(format!(
                "state etcd {}: lease grant answered without an ID: {v}",
                self.url
            )));
        }
        Ok(id)
    }

    /// Renew lease `id`; the TTL it now has (0: it had expired).
    pub fn keepalive(&self, id: &str) -> Result<u64, StateError> {
        let v = self.call("/v3/lease/keepalive", json!({ "ID": id }))?;
        let result = if v.get("result").is_some() {
            &v["result"]
        } else {
            &v
        };
        Ok(number(&result["TTL"]))
    }

    /// Seconds left on lease `id` (`None`: it expired or never existed).
    pub fn time_to_live(&self, id: &str) -> Result<Option<i64>, StateError> {
        let v = self.call("/v3/lease/timetolive", json!({ "ID": id }))?;
        let ttl = match &v["TTL"] {
            Value::String(s) => s.parse().unwrap_or(-1),
            Value::Number(n) => n.as_i64().unwrap_or(-1),
            _ => -1,
        };
        Ok((ttl >= 0).then_some(ttl))
    }

    /// Revoke lease `id`, deleting the keys attached to it.
    pub fn revoke(&self, id: &str) -> Result<(), StateError> {
        self.call("/v3/lease/revoke", json!({ "ID": id }))
            .map(|_| ())
    }
}
