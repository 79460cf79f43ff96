//! The contract between primitives and the executor.
//!
//! A primitive call becomes a [`Step`]. The executor asks it to [`Step::prepare`]:
//! gather facts (read-only) and decide [`Action`]s. Then the executor alone
//! decides whether to [`Step::apply`] (run) or only report (plan). When a step's
//! inputs are not known yet (offline plans, values known only after an earlier
//! create) the executor asks for [`Step::intent`] instead: what the step would do
//! to a blank target, without touching anything.
//!
//! Primitives never know whether they are planning or applying.

use crate::action::Action;
use crate::bundle::Bundle;
use crate::error::StepError;
use crate::ssh::Pool;
use crate::workspace::Workspace;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::Arc;

/// What a step decided from its facts.
pub struct Prepared<O, D> {
    /// What will be (or was) done, including explicit no-ops with reasons.
    pub actions: Vec<Action>,
    /// A digest of the facts the decision rests on; a saved plan compares it at
    /// apply time to detect drift. Use [`fingerprint`].
    pub facts: String,
    /// The step's output if the work is done (what a plan shows and what later
    /// steps see in plan mode). When `work` is `None` this is the real output.
    pub predicted: O,
    /// The work to do, or `None` when the target is already as requested.
    pub work: Option<D>,
}

impl<O, D> Prepared<O, D> {
    /// Nothing to do: `output` is the result, `actions` explain why (no-ops).
    pub fn done(actions: Vec<Action>, facts: String, output: O) -> Self {
        Prepared {
            actions,
            facts,
            predicted: output,
            work: None,
        }
    }
    /// Work to do.
    pub fn todo(actions: Vec<Action>, facts: String, predicted: O, work: D) -> Self {
        Prepared {
            actions,
            facts,
            predicted,
            work: Some(work),
        }
    }
}

/// A digest of facts, for [`Prepared::facts`].
pub fn fingerprint(facts: &impl Serialize) -> String {
    use sha2::{Digest, Sha256};
    let json = serde_json::to_vec(facts).unwrap_or_default();
    hex::encode(&Sha256::digest(&json)[..12])
}

/// What steps may use: the workspace, connections, the runbook's own files.
pub struct Ctx {
    pub workspace: Workspace,
    /// One multiplexed ssh connection per host.
    pub ssh: Pool,
    /// Plain HTTP client (downloads, cloud APIs). etcd builds mTLS clients itself.
    pub http: reqwest::Client,
    /// The running runbook's files (templates, files to upload).
    pub bundle: Arc<Bundle>,
    /// Environment for endpoints and tokens (process env, overlaid by a lab's env file).
    pub env: BTreeMap<String, String>,
}

impl Ctx {
    /// A variable from the environment cairn was given.
    pub fn env(&self, key: &str) -> Option<&str> {
        self.env.get(key).map(String::as_str)
    }
}

/// One primitive call. `Serialize` gives the arguments that key and hash the
/// step in the journal: secret values must be `#[serde(skip)]`ped or hashed.
///
/// [`Step::prepare`], [`Step::intent`] and [`Step::apply`] take a
/// [`Valid`] step, and a [`Valid`] is made only by [`Valid::new`], which runs
/// [`Step::validate`]: no path (connected plan, offline plan, run, resume)
/// reaches a step's facts or work with arguments it would refuse.
#[allow(async_fn_in_trait)]
pub trait Step: Serialize + Sized {
    /// The result handed back to the script; journaled and replayed on resume.
    type Output: Serialize + DeserializeOwned + Clone + Send + Sync + 'static;
    /// What `prepare` decided to do, handed to `apply`.
    type Work;

    /// The primitive's name as runbooks call it (`gen_cert`, `file`, ...).
    fn kind(&self) -> &'static str;
    /// Where it acts: a host name, `local`, or a cloud provider name.
    fn target(&self) -> String;
    /// Check the arguments without facts or network. Called only by
    /// [`Valid::new`], so it runs before `prepare` and before `intent`, and a
    /// plan made without facts refuses what a connected one refuses.
    /// Placeholder values (see [`crate::unknown`]) must be let through.
    fn validate(&self) -> Result<(), StepError>;
    /// Observe facts (read-only) and decide.
    async fn prepare(
        this: &Valid<Self>,
        ctx: &Ctx,
    ) -> Result<Prepared<Self::Output, Self::Work>, StepError>;
    /// What the step would do to a blank target, without observing anything.
    /// The output may hold placeholders (see [`crate::unknown`]).
    fn intent(this: &Valid<Self>) -> Prepared<Self::Output, Self::Work>;
    /// Carry out the work decided by `prepare`.
    async fn apply(
        this: &Valid<Self>,
        ctx: &Ctx,
        work: Self::Work,
    ) -> Result<Self::Output, StepError>;
}

/// A step whose [`Step::validate`] passed. It can be read (it derefs to the
/// step) but not changed, so what was validated is what runs.
pub struct Valid<S>(S);

impl<S: Step> Valid<S> {
    /// Validate `step`: the only way to make a `Valid`.
    pub fn new(step: S) -> Result<Self, StepError> {
        step.validate()?;
        Ok(Valid(step))
    }
    /// [`Step::prepare`] of the validated step.
    pub async fn prepare(&self, ctx: &Ctx) -> Result<Prepared<S::Output, S::Work>, StepError> {
        S::prepare(self, ctx).await
    }
    /// [`Step::intent`] of the validated step.
    pub fn intent(&self) -> Prepared<S::Output, S::Work> {
        S::intent(self)
    }
    /// [`Step::apply`] of the validated step.
    pub async fn apply(&self, ctx: &Ctx, work: S::Work) -> Result<S::Output, StepError> {
        S::apply(self, ctx, work).await
    }
}

impl<S> std::ops::Deref for Valid<S> {
    type Target = S;
    fn deref(&self) -> &S {
        &self.0
    }
}

/// Calls on a step not validated yet, for Rust callers (tests, one step at a
/// time): each validates a copy first and refuses what [`Step::validate`]
/// refuses, then does what [`Valid`]'s method of the same name does.
#[allow(async_fn_in_trait)]
pub trait Validating: Step + Clone {
    /// Validate, then [`Step::prepare`].
    async fn prepare(&self, ctx: &Ctx) -> Result<Prepared<Self::Output, Self::Work>, StepError> {
        Valid::new(self.clone())?.prepare(ctx).await
    }
    /// Validate, then [`Step::intent`].
    fn intent(&self) -> Result<Prepared<Self::Output, Self::Work>, StepError> {
        Ok(Valid::new(self.clone())?.intent())
    }
    /// Validate, then [`Step::apply`].
    async fn apply(&self, ctx: &Ctx, work: Self::Work) -> Result<Self::Output, StepError> {
        Valid::new(self.clone())?.apply(ctx, work).await
    }
}

impl<S: Step + Clone> Validating for S {}
