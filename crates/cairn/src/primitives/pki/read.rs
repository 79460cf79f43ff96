//! `workspace_cert(name)`: what a certificate of the workspace says, as a
//! read-only step (a plan without facts gets placeholders; a missing
//! certificate is an error naming it, never a guess).

use super::cert::{parse_pem, CertInfo};
use super::store::{check_name, Store};
use crate::action::Action;
use crate::error::StepError;
use crate::step::{fingerprint, Ctx, Prepared, Step, Valid};
use crate::unknown;
use serde::Serialize;

crate::registration::documented! {
    /// What the certificate `<workspace>/pki/<name>.crt` says (a `CertInfo`).
    ///
    /// A read-only step: a run or plan reads the file (an error naming it when
    /// it is missing or not a certificate); a plan without facts (`cairn check`,
    /// `plan --offline`) gets placeholders. Use it for certificates an earlier run
    /// made, e.g. to re-issue one with the same subject, SANs and key type.
    ///
    /// ```rhai
    /// let ca = workspace_cert("etcd-cluster-1-etcd-ca");
    /// print(`CA serial ${ca.serial}, until ${ca.not_after}`);
    /// ```
    pub(super) const DOC;
}

/// `workspace_cert(name)`.
#[derive(Clone, Debug, Serialize)]
pub struct WorkspaceCert {
    pub name: String,
}

impl WorkspaceCert {
    fn action(&self) -> Action {
        Action::noop(
            "local",
            format!("read certificate pki/{}.crt", self.name),
            "read-only fact",
        )
    }
}

impl Step for WorkspaceCert {
    type Output = CertInfo;
    type Work = ();

    fn kind(&self) -> &'static str {
        "workspace_cert"
    }
    fn target(&self) -> String {
        "local".into()
    }
    fn validate(&self) -> Result<(), StepError> {
        if unknown::is_unknown(&self.name) {
            return Ok(());
        }
        check_name("name", &self.name)
    }
    async fn prepare(this: &Valid<Self>, ctx: &Ctx) -> Result<Prepared<CertInfo, ()>, StepError> {
        let store = Store::new(ctx.workspace.pki_dir());
        let path = store.cert_path(&this.name);
        let pem = store.read_cert(&this.name)?.ok_or_else(|| {
            StepError::invalid(
                "name",
                format!(
                    "no certificate {} in the workspace (run this in the workspace that made it)",
                    path.display()
                ),
            )
        })?;
        let info = parse_pem(&pem)
            .map_err(|e| StepError::invalid("name", format!("{}: {e}", path.display())))?
            .info;
        Ok(Prepared::done(
            vec![this.action()],
            fingerprint(&info),
            info,
        ))
    }
    fn intent(this: &Valid<Self>) -> Prepared<CertInfo, ()> {
        Prepared::done(
            vec![this.action()],
            String::new(),
            CertInfo::unknown(&this.name),
        )
    }
    async fn apply(this: &Valid<Self>, ctx: &Ctx, _work: ()) -> Result<CertInfo, StepError> {
        // Never reached: prepare leaves no work.
        Ok(this.prepare(ctx).await?.predicted)
    }
}
