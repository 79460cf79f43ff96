//! DigitalOcean: droplets and ssh keys.
//!
//! Shapes follow the public API v2 reference
//! (<https://docs.digitalocean.com/reference/api/>): `POST /droplets` answers
//! 202 with the droplet and `links.actions` (the `create` action, polled at
//! `GET /actions/{id}` until `completed`); the droplet is then polled until
//! `active` and its addresses are read from `networks.v4` (`public`/`private`).
//! Lists follow `links.pages.next`.

use super::http::{Api, Created, Provider};
use super::{fingerprint_md5, pick_private_key, KeyRef, PublicKeySource, Removed, SshKey};
use crate::action::Action;
use crate::error::StepError;
use crate::executor::{script_error, Executor};
use crate::host::{Host, HostKeys};
use crate::step::{fingerprint, Ctx, Prepared, Step, Valid};
use crate::unknown::placeholder;
use reqwest::{Method, Url};
use rhai::{Array, Dynamic, Engine, EvalAltResult, Map, NativeCallContext};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

const TARGET: &str = "digitalocean";

// ----- API shapes (the subset cairn reads) -----

/// A droplet object.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ApiDroplet {
    pub id: u64,
    pub name: String,
    /// `new`, `active`, `off` or `archive`.
    pub status: String,
    pub networks: ApiNetworks,
    pub region: ApiRegion,
    pub size_slug: String,
    #[serde(default)]
    pub image: Option<ApiImage>,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub vpc_uuid: Option<String>,
}

/// `networks` of a droplet.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ApiNetworks {
    #[serde(default)]
    pub v4: Vec<ApiNetworkV4>,
}

/// One IPv4 address of a droplet.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ApiNetworkV4 {
    pub ip_address: String,
    /// `public` or `private`.
    #[serde(rename = "type")]
    pub kind: String,
}

/// A region (by slug).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ApiRegion {
    pub slug: String,
}

/// An image (by slug; snapshots have none).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ApiImage {
    #[serde(default)]
    pub slug: Option<String>,
}

/// An action object.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ApiAction {
    pub id: u64,
    /// `in-progress`, `completed` or `errored`.
    pub status: String,
    #[serde(rename = "type")]
    pub kind: String,
}

/// An ssh key object (`/account/keys`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ApiSshKey {
    pub id: u64,
    pub fingerprint: String,
    pub public_key: String,
    pub name: String,
}

/// A link to an action in `links.actions`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ApiActionLink {
    pub id: u64,
    pub rel: String,
    #[serde(default)]
    pub href: String,
}

fn parse<T: DeserializeOwned>(what: &str, value: Value) -> Result<T, StepError> {
    serde_json::from_value(value)
        .map_err(|e| StepError::Other(format!("digitalocean: unexpected answer for {what}: {e}")))
}

/// A typed DigitalOcean client over [`Api`].
#[derive(Debug)]
pub struct DigitalOcean {
    api: Api,
    per_page: u32,
}

impl DigitalOcean {
    /// A client for `api` (which must be a DigitalOcean API).
    pub fn new(api: Api) -> Self {
        DigitalOcean { api, per_page: 100 }
    }

    /// The client configured in `ctx` (`DIGITALOCEAN_ENDPOINT`,
    /// `DIGITALOCEAN_ACCESS_TOKEN`) or with `token_file`.
    pub fn from_ctx(ctx: &Ctx, token_file: Option<&str>) -> Result<Self, StepError> {
        Ok(DigitalOcean::new(Api::from_ctx(
            Provider::DigitalOcean,
            ctx,
            token_file,
        )?))
    }

    /// Page size of lists (default 100).
    pub fn per_page(mut self, n: u32) -> Self {
        self.per_page = n.max(1);
        self
    }

    /// Every item of a list endpoint, following `links.pages.next`.
    pub async fn list<T: DeserializeOwned>(
        &self,
        path: &str,
        key: &str,
        filters: &[(&str, String)],
    ) -> Result<Vec<T>, StepError> {
        let mut query: Vec<(&str, String)> = filters.to_vec();
        query.push(("page", "1".into()));
        query.push(("per_page", self.per_page.to_string()));
        let mut url = self.api.url(path, &query)?;
        let mut out = Vec::new();
        for _ in 0..10_000 {
            let mut body = self.api.call(Method::GET, url.clone(), None).await?;
            let items: Vec<T> = parse(path, body[key].take())?;
            out.extend(items);
            let Some(next) = body["links"]["pages"]["next"].as_str() else {
                return Ok(out);
            };
            let next = Url::parse(next).map_err(|e| {
                StepError::Other(format!("digitalocean: bad next-page link `{next}`: {e}"))
            })?;
            if !self.api.owns(&next) {
                return Err(StepError::Other(format!(
                    "digitalocean: next-page link {next} points outside the API endpoint; not following it"
                )));
            }
            url = next;
        }
        Err(StepError::Other(format!(
            "digitalocean: {path}: too many pages"
        )))
    }

    /// The droplet named exactly `name`, if any.
    pub async fn droplet_by_name(&self, name: &str) -> Result<Option<ApiDroplet>, StepError> {
        Ok(self
            .list::<ApiDroplet>("droplets", "droplets", &[("name", name.to_string())])
            .await?
            .into_iter()
            .find(|d| d.name == name))
    }

    /// Droplets carrying `tag`.
    pub async fn droplets_by_tag(&self, tag: &str) -> Result<Vec<ApiDroplet>, StepError> {
        self.list("droplets", "droplets", &[("tag_name", tag.to_string())])
            .await
    }

    /// `GET /droplets/{id}`, `None` when it does not exist.
    pub async fn droplet(&self, id: u64) -> Result<Option<ApiDroplet>, StepError> {
        match self.api.get_opt(&format!("droplets/{id}")).await? {
            Some(mut v) => Ok(Some(parse("droplet", v["droplet"].take())?)),
            None => Ok(None),
        }
    }

    /// The ssh key with this fingerprint, if any.
    pub async fn ssh_key(&self, fingerprint: &str) -> Result<Option<ApiSshKey>, StepError> {
        match self
            .api
            .get_opt(&format!("account/keys/{fingerprint}"))
            .await?
        {
            Some(mut v) => Ok(Some(parse("ssh key", v["ssh_key"].take())?)),
            None => Ok(None),
        }
    }

    /// Poll `GET /actions/{id}` until `completed`; `errored` is an error.
    pub async fn wait_action(&self, id: u64, timeout: Duration) -> Result<ApiAction, StepError> {
        let action: ApiAction = self
            .api
            .wait_until(&format!("digitalocean action {id}"), timeout, || async {
                let mut v = self.api.get(&format!("actions/{id}"), &[]).await?;
                let a: ApiAction = parse("action", v["action"].take())?;
                Ok((a.status != "in-progress").then_some(a))
            })
            .await?;
        if action.status == "completed" {
            return Ok(action);
        }
        Err(StepError::Api {
            service: TARGET.into(),
            method: "GET".into(),
            path: format!("/actions/{id} ({})", action.kind),
            status: 200,
            code: action.status.clone(),
            message: format!("the {} action ended {}", action.kind, action.status),
        })
    }

    /// Poll the droplet until its status is `active`.
    pub async fn wait_active(
        &self,
        id: u64,
        name: &str,
        timeout: Duration,
    ) -> Result<ApiDroplet, StepError> {
        self.api
            .wait_until(
                &format!("digitalocean droplet {name} to be active"),
                timeout,
                || async {
                    match self.droplet(id).await? {
                        Some(d) if d.status == "active" => Ok(Some(d)),
                        Some(_) => Ok(None),
                        None => Err(StepError::Other(format!(
                            "digitalocean droplet {name} (id {id}) disappeared"
                        ))),
                    }
                },
            )
            .await
    }

    /// Create a droplet (see [`DoDroplet`]) and wait until it is active.
    pub async fn create_droplet(
        &self,
        spec: &DoDroplet,
        timeout: Duration,
    ) -> Result<ApiDroplet, StepError> {
        let ssh_keys: Vec<Value> = spec
            .ssh_keys
            .iter()
            .map(|k| match k {
                KeyRef::Key(k) => {
                    k.id.parse::<u64>()
                        .map(|i| json!(i))
                        .unwrap_or_else(|_| json!(k.fingerprint))
                }
                KeyRef::Name(n) => json!(n),
                KeyRef::Id(i) => json!(i),
            })
            .collect();
        let mut body = json!({
            "name": spec.name,
            "region": spec.region,
            "size": spec.size,
            "image": spec.image,
            "ssh_keys": ssh_keys,
            "tags": spec.tags,
        });
        if let Some(ud) = &spec.user_data {
            body["user_data"] = json!(ud);
        }
        if let Some(vpc) = &spec.vpc_uuid {
            body["vpc_uuid"] = json!(vpc);
        }
        let created = self
            .api
            .create("droplets", &body, || async {
                Ok(self
                    .droplet_by_name(&spec.name)
                    .await?
                    .map(|d| json!({ "droplet": d })))
            })
            .await?;
        let id = match created {
            Created::New(mut v) => {
                let d: ApiDroplet = parse("droplet", v["droplet"].take())?;
                let links: Vec<ApiActionLink> =
                    serde_json::from_value(v["links"]["actions"].take()).unwrap_or_default();
                for link in links.iter().filter(|l| l.rel == "create") {
                    self.wait_action(link.id, timeout).await?;
                }
                d.id
            }
            Created::Found(mut v) => parse::<ApiDroplet>("droplet", v["droplet"].take())?.id,
        };
        self.wait_active(id, &spec.name, timeout).await
    }
}

// ----- outputs -----

/// A droplet as runbooks see it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, rhai::CustomType)]
#[rhai_type(name = "Droplet", extra = crate::args::argument)]
pub struct Droplet {
    #[rhai_type(readonly)]
    pub name: String,
    /// Droplet id (a placeholder in plans until created).
    #[rhai_type(readonly)]
    pub id: String,
    #[rhai_type(readonly)]
    pub status: String,
    /// Public IPv4 address.
    #[rhai_type(readonly)]
    pub ipv4: String,
    /// Private (VPC) IPv4 address.
    #[rhai_type(readonly)]
    pub private_ip: String,
    #[rhai_type(skip)]
    pub tags: Vec<String>,
    #[rhai_type(readonly)]
    pub region: String,
    #[rhai_type(readonly)]
    pub size: String,
    #[rhai_type(readonly)]
    pub image: String,
    /// Private key file `host()` uses, if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[rhai_type(skip)]
    pub private_key: Option<String>,
}

impl Droplet {
    /// The droplet as seen through the API.
    pub fn from_api(d: &ApiDroplet, private_key: Option<String>) -> Self {
        let addr = |kind: &str| {
            d.networks
                .v4
                .iter()
                .find(|n| n.kind == kind)
                .map(|n| n.ip_address.clone())
                .unwrap_or_default()
        };
        Droplet {
            name: d.name.clone(),
            id: d.id.to_string(),
            status: d.status.clone(),
            ipv4: addr("public"),
            private_ip: addr("private"),
            tags: d.tags.clone(),
            region: d.region.slug.clone(),
            size: d.size_slug.clone(),
            image: d
                .image
                .as_ref()
                .and_then(|i| i.slug.clone())
                .unwrap_or_default(),
            private_key,
        }
    }

    /// A cairn host for ssh: public address, private address, the key file.
    pub fn host(&self, key: Option<&str>) -> Host {
        let mut h = Host::new(&self.name, &self.ipv4);
        h.private_address = (!self.private_ip.is_empty()).then(|| self.private_ip.clone());
        h.key = key.or(self.private_key.as_deref()).map(PathBuf::from);
        h.groups = self.tags.clone();
        h.host_keys = HostKeys::Workspace;
        h
    }
}

// ----- steps -----

/// `do_ssh_key`: an ssh key, reused if one with the same fingerprint exists.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DoSshKey {
    pub name: String,
    #[serde(default)]
    pub public_key_file: Option<String>,
    #[serde(default)]
    pub public_key: Option<String>,
    #[serde(default)]
    pub token_file: Option<String>,
}

impl DoSshKey {
    fn source(&self) -> PublicKeySource {
        PublicKeySource {
            public_key_file: self.public_key_file.clone(),
            public_key: self.public_key.clone(),
        }
    }
}

impl Step for DoSshKey {
    type Output = SshKey;
    type Work = (String, String);

    /// Every argument is typed where the script calls it; nothing else can
    /// be checked without facts.
    fn validate(&self) -> Result<(), StepError> {
        Ok(())
    }
    fn kind(&self) -> &'static str {
        "do_ssh_key"
    }
    fn target(&self) -> String {
        TARGET.into()
    }

    async fn prepare(
        this: &Valid<Self>,
        ctx: &Ctx,
    ) -> Result<Prepared<SshKey, (String, String)>, StepError> {
        let public_key = this.source().read(ctx)?;
        let fp = fingerprint_md5(&public_key)?;
        let private_key = this.source().private_key(ctx);
        let client = DigitalOcean::from_ctx(ctx, this.token_file.as_deref())?;
        let existing = client.ssh_key(&fp).await?;
        let facts = fingerprint(&existing);
        if let Some(k) = existing {
            let reason = if k.name == this.name {
                "exists with the same fingerprint".to_string()
            } else {
                format!(
                    "a key with the same fingerprint exists as {}; reusing it",
                    k.name
                )
            };
            let existing = SshKey {
                provider: TARGET.into(),
                name: k.name.clone(),
                id: k.id.to_string(),
                fingerprint: fp,
                private_key,
            };
            return Ok(existing.reused(&this.name, reason, facts));
        }
        Ok(SshKey::to_create(
            TARGET,
            &this.name,
            fp,
            private_key,
            public_key,
            facts,
        ))
    }

    fn intent(this: &Valid<Self>) -> Prepared<SshKey, (String, String)> {
        SshKey::intent(TARGET, &this.name)
    }

    async fn apply(
        this: &Valid<Self>,
        ctx: &Ctx,
        (public_key, fp): (String, String),
    ) -> Result<SshKey, StepError> {
        let client = DigitalOcean::from_ctx(ctx, this.token_file.as_deref())?;
        let body = json!({ "name": this.name, "public_key": public_key });
        let created = client
            .api
            .create("account/keys", &body, || async {
                Ok(client.ssh_key(&fp).await?.map(|k| json!({ "ssh_key": k })))
            })
            .await?;
        let (Created::New(mut v) | Created::Found(mut v)) = created;
        let k: ApiSshKey = parse("ssh key", v["ssh_key"].take())?;
        Ok(SshKey {
            provider: TARGET.into(),
            name: k.name,
            id: k.id.to_string(),
            fingerprint: k.fingerprint,
            private_key: this.source().private_key(ctx),
        })
    }
}

/// `do_droplet`: a droplet, created and waited for until it is active.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DoDroplet {
    pub name: String,
    pub region: String,
    pub size: String,
    pub image: String,
    #[serde(default)]
    pub ssh_keys: Vec<KeyRef>,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub user_data: Option<String>,
    #[serde(default)]
    pub vpc_uuid: Option<String>,
    /// Private key file for `host()` (default: the key handle's).
    #[serde(default)]
    pub private_key: Option<String>,
    /// Seconds to wait for the droplet to be active (default 600).
    #[serde(default)]
    pub timeout: Option<u64>,
    #[serde(default)]
    pub token_file: Option<String>,
}

/// What `do_droplet` will do.
pub enum DropletWork {
    Create,
    /// It exists but is not active yet.
    Wait(u64),
}

impl DoDroplet {
    fn timeout(&self) -> Duration {
        Duration::from_secs(self.timeout.unwrap_or(600))
    }

    fn key(&self) -> Option<String> {
        pick_private_key(&self.private_key, &self.ssh_keys)
    }

    /// How an existing droplet differs from this spec (empty: it matches).
    pub fn differences(&self, d: &ApiDroplet) -> Vec<String> {
        let mut diffs = Vec::new();
        let mut differ = |field: &str, have: &str, want: &str| {
            if have != want {
                diffs.push(format!("{field} {have}, runbook asks {want}"));
            }
        };
        differ("region", &d.region.slug, &self.region);
        differ("size", &d.size_slug, &self.size);
        if let Some(slug) = d.image.as_ref().and_then(|i| i.slug.as_deref()) {
            differ("image", slug, &self.image);
        }
        if let Some(vpc) = &self.vpc_uuid {
            differ("vpc_uuid", d.vpc_uuid.as_deref().unwrap_or("none"), vpc);
        }
        for t in &self.tags {
            if !d.tags.contains(t) {
                diffs.push(format!("no tag {t}, runbook asks for it"));
            }
        }
        diffs
    }

    fn create_action(&self) -> Action {
        let mut what = format!(
            "droplet {} ({}, {}, {})",
            self.name, self.size, self.image, self.region
        );
        if !self.tags.is_empty() {
            what.push_str(&format!(" tags {}", self.tags.join(",")));
        }
        Action::create(TARGET, what)
    }

    fn predicted(&self) -> Droplet {
        let p = |what: &str| placeholder("create", &format!("{}.{what}", self.name));
        Droplet {
            name: self.name.clone(),
            id: p("id"),
            status: "active".into(),
            ipv4: p("ipv4"),
            private_ip: p("private_ip"),
            tags: self.tags.clone(),
            region: self.region.clone(),
            size: self.size.clone(),
            image: self.image.clone(),
            private_key: self.key(),
        }
    }
}

impl Step for DoDroplet {
    type Output = Droplet;
    type Work = DropletWork;

    /// Every argument is typed where the script calls it; nothing else can
    /// be checked without facts.
    fn validate(&self) -> Result<(), StepError> {
        Ok(())
    }
    fn kind(&self) -> &'static str {
        "do_droplet"
    }
    fn target(&self) -> String {
        TARGET.into()
    }

    async fn prepare(
        this: &Valid<Self>,
        ctx: &Ctx,
    ) -> Result<Prepared<Droplet, DropletWork>, StepError> {
        let client = DigitalOcean::from_ctx(ctx, this.token_file.as_deref())?;
        let existing = client.droplet_by_name(&this.name).await?;
        let facts = fingerprint(
            &existing
                .as_ref()
                .map(|d| (&d.id, &d.region, &d.size_slug, &d.tags)),
        );
        let Some(d) = existing else {
            return Ok(Prepared::todo(
                vec![this.create_action()],
                facts,
                this.predicted(),
                DropletWork::Create,
            ));
        };
        let diffs = this.differences(&d);
        if !diffs.is_empty() {
            return Err(StepError::Other(format!(
                "droplet {} exists with {}",
                this.name,
                diffs.join("; ")
            )));
        }
        let what = format!("droplet {}", this.name);
        if d.status == "active" {
            let action = Action::noop(TARGET, what, "exists with the same spec, active");
            return Ok(Prepared::done(
                vec![action],
                facts,
                Droplet::from_api(&d, this.key()),
            ));
        }
        let action = Action::noop(
            TARGET,
            what,
            format!(
                "exists with the same spec ({}); will wait until active",
                d.status
            ),
        );
        Ok(Prepared::todo(
            vec![action],
            facts,
            this.predicted(),
            DropletWork::Wait(d.id),
        ))
    }

    fn intent(this: &Valid<Self>) -> Prepared<Droplet, DropletWork> {
        Prepared::todo(
            vec![this.create_action()],
            String::new(),
            this.predicted(),
            DropletWork::Create,
        )
    }

    async fn apply(this: &Valid<Self>, ctx: &Ctx, work: DropletWork) -> Result<Droplet, StepError> {
        let client = DigitalOcean::from_ctx(ctx, this.token_file.as_deref())?;
        let d = match work {
            DropletWork::Create => client.create_droplet(this, this.timeout()).await?,
            DropletWork::Wait(id) => client.wait_active(id, &this.name, this.timeout()).await?,
        };
        Ok(Droplet::from_api(&d, this.key()))
    }
}

/// `do_droplets`: droplets carrying a tag (read-only).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DoDroplets {
    pub tag: String,
    /// Private key file for the droplets' `host()`.
    #[serde(default)]
    pub private_key: Option<String>,
    #[serde(default)]
    pub token_file: Option<String>,
}

impl Step for DoDroplets {
    type Output = Vec<Droplet>;
    type Work = ();

    /// Every argument is typed where the script calls it; nothing else can
    /// be checked without facts.
    fn validate(&self) -> Result<(), StepError> {
        Ok(())
    }
    fn kind(&self) -> &'static str {
        "do_droplets"
    }
    fn target(&self) -> String {
        TARGET.into()
    }

    async fn prepare(
        this: &Valid<Self>,
        ctx: &Ctx,
    ) -> Result<Prepared<Vec<Droplet>, ()>, StepError> {
        let client = DigitalOcean::from_ctx(ctx, this.token_file.as_deref())?;
        let mut out: Vec<Droplet> = client
            .droplets_by_tag(&this.tag)
            .await?
            .iter()
            .map(|d| Droplet::from_api(d, this.private_key.clone()))
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        let names: Vec<&str> = out.iter().map(|d| d.name.as_str()).collect();
        let action = Action::noop(
            TARGET,
            format!("list droplets tagged {}", this.tag),
            format!("read-only; found {}: {}", out.len(), names.join(", ")),
        );
        Ok(Prepared::done(vec![action], fingerprint(&names), out))
    }

    fn intent(this: &Valid<Self>) -> Prepared<Vec<Droplet>, ()> {
        let action = Action::noop(
            TARGET,
            format!("list droplets tagged {}", this.tag),
            "read-only; not listed offline",
        );
        Prepared::done(vec![action], String::new(), Vec::new())
    }

    async fn apply(this: &Valid<Self>, ctx: &Ctx, _work: ()) -> Result<Vec<Droplet>, StepError> {
        Ok(this.prepare(ctx).await?.predicted)
    }
}

/// Which droplets a delete removes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Selection {
    /// The droplet with this name.
    Name(String),
    /// Every droplet with this tag (`DELETE /droplets?tag_name=`).
    Tag(String),
}

/// `do_delete_droplet` / `do_delete_droplets`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DoDelete {
    pub selection: Selection,
    #[serde(default)]
    pub token_file: Option<String>,
}

impl DoDelete {
    fn what(&self) -> String {
        match &self.selection {
            Selection::Name(n) => format!("droplet {n}"),
            Selection::Tag(t) => format!("droplets tagged {t}"),
        }
    }
    async fn find(&self, client: &DigitalOcean) -> Result<Vec<ApiDroplet>, StepError> {
        match &self.selection {
            Selection::Name(n) => Ok(client.droplet_by_name(n).await?.into_iter().collect()),
            Selection::Tag(t) => client.droplets_by_tag(t).await,
        }
    }
}

impl Step for DoDelete {
    type Output = Removed;
    type Work = Vec<u64>;

    /// Every argument is typed where the script calls it; nothing else can
    /// be checked without facts.
    fn validate(&self) -> Result<(), StepError> {
        Ok(())
    }
    fn kind(&self) -> &'static str {
        match self.selection {
            Selection::Name(_) => "do_delete_droplet",
            Selection::Tag(_) => "do_delete_droplets",
        }
    }
    fn target(&self) -> String {
        TARGET.into()
    }

    async fn prepare(
        this: &Valid<Self>,
        ctx: &Ctx,
    ) -> Result<Prepared<Removed, Vec<u64>>, StepError> {
        let client = DigitalOcean::from_ctx(ctx, this.token_file.as_deref())?;
        let found = this.find(&client).await?;
        let ids: Vec<u64> = found.iter().map(|d| d.id).collect();
        let facts = fingerprint(&ids);
        if found.is_empty() {
            return Ok(Prepared::done(
                vec![Action::noop(TARGET, this.what(), "none exist")],
                facts,
                Removed {
                    what: this.what(),
                    count: 0,
                },
            ));
        }
        let actions = found
            .iter()
            .map(|d| Action::delete(TARGET, format!("droplet {} (id {})", d.name, d.id)))
            .collect();
        let out = Removed {
            what: this.what(),
            count: ids.len() as i64,
        };
        Ok(Prepared::todo(actions, facts, out, ids))
    }

    fn intent(this: &Valid<Self>) -> Prepared<Removed, Vec<u64>> {
        Prepared::todo(
            vec![Action::delete(TARGET, format!("{} (if any)", this.what()))],
            String::new(),
            Removed {
                what: this.what(),
                count: 0,
            },
            Vec::new(),
        )
    }

    async fn apply(this: &Valid<Self>, ctx: &Ctx, ids: Vec<u64>) -> Result<Removed, StepError> {
        let client = DigitalOcean::from_ctx(ctx, this.token_file.as_deref())?;
        match &this.selection {
            Selection::Tag(t) => {
                client
                    .api
                    .delete("droplets", &[("tag_name", t.clone())])
                    .await?;
            }
            Selection::Name(_) => {
                for id in &ids {
                    client.api.delete(&format!("droplets/{id}"), &[]).await?;
                }
            }
        }
        let what = this.what();
        client
            .api
            .wait_until(
                &format!("digitalocean {what} to be gone"),
                Duration::from_secs(300),
                || async {
                    for id in &ids {
                        if client.droplet(*id).await?.is_some() {
                            return Ok(None);
                        }
                    }
                    Ok(Some(()))
                },
            )
            .await?;
        Ok(Removed {
            what,
            count: ids.len() as i64,
        })
    }
}

// ----- Rhai -----

type Res<T> = Result<T, Box<EvalAltResult>>;

/// Arguments of `do_delete_droplet`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeleteByName {
    pub name: String,
    #[serde(default)]
    pub token_file: Option<String>,
}

/// Arguments of `do_delete_droplets`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeleteByTag {
    pub tag: String,
    #[serde(default)]
    pub token_file: Option<String>,
}

/// Register the DigitalOcean functions and the `Droplet` type.
pub fn register(engine: &mut Engine, exec: &Arc<Executor>) {
    engine
        .build_type::<Droplet>()
        .register_get("tags", |d: &mut Droplet| {
            d.tags.iter().cloned().map(Dynamic::from).collect::<Array>()
        })
        .register_fn("to_string", |d: &mut Droplet| {
            format!("{} ({})", d.name, d.ipv4)
        })
        .register_fn("to_debug", |d: &mut Droplet| {
            format!(
                "Droplet({} id={} {} {} private={})",
                d.name, d.id, d.status, d.ipv4, d.private_ip
            )
        });
    crate::registration::function!(
        engine,
        /// The droplet as a `Host` for ssh: public IPv4 as address, private (VPC) IPv4 as
        /// private_address, the private key of the ssh key handle it was created with
        /// (or `private_key`), host keys pinned in the workspace on first contact.
        fn "host"("droplet: Droplet") -> "Host" = |d: &mut Droplet| d.host(None)
    );
    crate::registration::function!(
        engine,
        /// The droplet as a `Host` for ssh, connecting with the given private key file.
        fn "host"("droplet: Droplet", "private_key: &str") -> "Host" =
        |d: &mut Droplet, key: &str| d.host(Some(key))
    );

    crate::registration::function!(
        engine,
        /// Ensure an ssh key is known to DigitalOcean (`/v2/account/keys`).
        ///
        /// `do_ssh_key(#{ name, public_key_file | public_key, token_file? })`
        ///
        /// A key with the same (MD5) fingerprint is reused whatever its name.
        fn "do_ssh_key"("spec: Map") -> "SshKey" =
        crate::registration::map_step::<DoSshKey>(exec, "do_ssh_key")
    );
    crate::registration::function!(
        engine,
        /// Ensure a droplet exists and is active.
        ///
        /// `do_droplet(#{ name, region, size, image, ssh_keys: [SshKey | id | fingerprint], tags?, user_data?, vpc_uuid?, private_key?, timeout?, token_file? })`
        ///
        /// Waits for the create action and for status `active`, then returns the droplet
        /// with its public and private addresses. A droplet with this name and the same
        /// spec is adopted; a different spec is an error naming what differs.
        fn "do_droplet"("spec: Map") -> "Droplet" =
        crate::registration::map_step::<DoDroplet>(exec, "do_droplet")
    );
    crate::registration::function!(
        engine,
        /// Droplets carrying a tag, sorted by name (read-only; runs in plans too).
        ///
        /// `do_droplets(#{ tag, private_key?, token_file? })`
        fn "do_droplets"("query: Map") -> "Array" =
        crate::registration::map_step_then::<DoDroplets, _>(
            exec,
            "do_droplets",
            crate::registration::array,
        )
    );
    let x = exec.clone();
    crate::registration::function!(
        engine,
        /// Delete every droplet carrying a tag and wait until they are gone (no-op if none).
        ///
        /// `do_delete_droplets(#{ tag, token_file? })`
        fn "do_delete_droplets"("query: Map") -> "Removed" =
        move |call: NativeCallContext, args: Map| -> Res<Removed> {
            let a: DeleteByTag = crate::args::parse(&call, "do_delete_droplets", args)?;
            if a.tag.is_empty() {
                return Err(script_error("do_delete_droplets: `tag` is empty"));
            }
            x.exec(
                &call,
                DoDelete {
                    selection: Selection::Tag(a.tag),
                    token_file: a.token_file,
                },
            )
        }
    );
    let x = exec.clone();
    crate::registration::function!(
        engine,
        /// Delete the droplet with this name and wait until it is gone (no-op if absent).
        ///
        /// `do_delete_droplet(#{ name, token_file? })`
        fn "do_delete_droplet"("query: Map") -> "Removed" =
        move |call: NativeCallContext, args: Map| -> Res<Removed> {
            let a: DeleteByName = crate::args::parse(&call, "do_delete_droplet", args)?;
            x.exec(
                &call,
                DoDelete {
                    selection: Selection::Name(a.name),
                    token_file: a.token_file,
                },
            )
        }
    );
}
