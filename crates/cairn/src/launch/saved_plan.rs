//! Saved plans: `cairn plan -o FILE` writes one, `cairn run --plan FILE`
//! refuses it when it drifted, naming each drift.

use super::*;

/// A saved plan (`cairn plan -o`), applied as approved by `cairn run --plan`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SavedPlan {
    pub runbook: String,
    pub version: String,
    pub source: String,
    pub content_hash: String,
    pub params: BTreeMap<String, serde_json::Value>,
    pub offline: bool,
    /// The `--limit` it was made with (canonical), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<String>,
    pub steps: Vec<StepRecord>,
    pub summary: crate::action::Summary,
}

impl SavedPlan {
    /// The saved plan's text, as `cairn plan -o FILE` writes it (pretty JSON,
    /// no final newline).
    pub fn to_text(&self) -> Result<String, serde_json::Error> {
        serde_json::to_string_pretty(self)
    }
}

/// The digest of a saved plan: SHA-256 (hex) of its text, as written by
/// `cairn plan -o FILE` and read by `cairn run --plan FILE`, so the audit log's
/// digest is `sha256sum FILE`.
pub fn plan_digest(text: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(text))
}

/// Refuse a saved plan made for other inputs or targets before anything runs;
/// hand back its steps, which the run then checks every change against.
pub(super) fn check_approved(
    p: &Prepared,
    rt: &tokio::runtime::Runtime,
    path: &Path,
    audit: &mut Audit,
) -> Result<BTreeMap<String, StepRecord>, Error> {
    let text = std::fs::read_to_string(path).map_err(Error::io("read plan", path))?;
    audit.plan_digest = Some(plan_digest(text.as_bytes()));
    let saved: SavedPlan = serde_json::from_str(&text).map_err(|e| Error::NotAPlan {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    let refuse = |why: PlanRefusal| Error::PlanRefused {
        path: path.to_path_buf(),
        why,
    };
    if saved.offline {
        return Err(refuse(PlanRefusal::Offline));
    }
    if saved.source != p.runbook.source || saved.content_hash != p.runbook.content_hash() {
        return Err(refuse(PlanRefusal::RunbookChanged {
            plan: format!(
                "{} {} {}",
                saved.runbook, saved.version, &saved.content_hash
            ),
            now: format!(
                "{} {} {}",
                p.runbook.manifest.name,
                p.runbook.manifest.version,
                p.runbook.content_hash()
            ),
        }));
    }
    let now_limit = p.limit.as_ref().map(|l| l.spec());
    if saved.limit != now_limit {
        let shown = |l: &Option<String>| match l {
            Some(l) => format!("--limit {l}"),
            None => "no --limit".to_string(),
        };
        return Err(refuse(PlanRefusal::Limit {
            plan: shown(&saved.limit),
            now: shown(&now_limit),
        }));
    }
    if saved.params != public_params(&p.inputs) {
        return Err(refuse(PlanRefusal::Params));
    }
    let cancel = Arc::new(AtomicBool::new(false));
    let fresh = execute(
        p,
        Pass::plan(Mode::Plan, Arc::new(Reporter::quiet())),
        rt,
        cancel,
    )?;
    if let Some(err) = fresh.error {
        return Err(err.into());
    }
    let by_key: BTreeMap<&str, &StepRecord> =
        saved.steps.iter().map(|s| (s.key.as_str(), s)).collect();
    let mut drifts: Vec<String> = fresh
        .steps
        .iter()
        .filter_map(|now| drift_of(by_key.get(now.key.as_str()).copied(), now))
        .collect();
    let now_keys: std::collections::BTreeSet<&str> =
        fresh.steps.iter().map(|s| s.key.as_str()).collect();
    for s in &saved.steps {
        if !now_keys.contains(s.key.as_str()) {
            drifts.push(format!(
                "planned step `{}` on {} ({}) would not run now",
                s.kind, s.target, s.key
            ));
        }
    }
    if drifts.is_empty() {
        Ok(saved
            .steps
            .into_iter()
            .map(|s| (s.key.clone(), s))
            .collect())
    } else {
        Err(refuse(PlanRefusal::Drifted(drifts)))
    }
}
