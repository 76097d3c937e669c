//! `sync.preview`: what the first sync would do in this domain with these settings, before
//! anything is written. Reads the cloud's user and group names with the connect key (which it
//! never uses up) and the domain's users and groups as the service account, then sorts each
//! cloud object with the adoption rules the agent's planner uses (`adopt::preview`). Never
//! fails: it reports (a warning when some cloud objects will not sync), or says why it could
//! not look.

use super::{CheckResult, ids::SYNC_PREVIEW};
use crate::adopt::{self, CloudObject, Counts, Preview, Rules, Scope};
use crate::answers::Answers;
use crate::cloud::api::DirectoryResponse;
use crate::cloud::client::{CloudClient, CloudOptions};
use crate::connect_key::ConnectKey;
use crate::directory::bind::AccountName;
use crate::directory::object::{self, Obj};

/// Names listed per kind of refusal in the summary's detail.
const FIRST: usize = 5;

/// What the preview read, and what it costs (for the bench).
pub struct Looked {
    /// The cloud → AD direction's first sync (`None` when nothing is written to AD).
    pub preview: Option<Preview>,
    /// AD as a source's first export: (users, groups) (`None` when AD is not a source).
    pub from_ad: Option<(super::source::FromAd, super::source::FromAd)>,
    pub ad_objects: usize,
    pub cloud_users: usize,
    pub cloud_groups: usize,
}

pub async fn run(answers: &Answers) -> CheckResult {
    match look(answers).await {
        Ok(l) => result(&l),
        Err(why) => CheckResult::skip(SYNC_PREVIEW, why),
    }
}

/// Reads the cloud and AD, and sorts; `Err` says why the preview cannot be made.
pub async fn look(answers: &Answers) -> Result<Looked, String> {
    let key = match answers.connect_key() {
        Ok(Some(k)) => ConnectKey::parse(k.expose()).map_err(|e| format!("the preview needs a valid connect key ({e})"))?,
        _ => return Err("no connect key is given, so the cloud's users cannot be read (an enrolled agent shows its next run with `ad-sync-agent run --config FILE --dry-run`)".into()),
    };
    let cloud = answers.cloud.as_ref().ok_or("no [cloud] section")?;
    let client = CloudClient::new(&CloudOptions {
        url: cloud.url.clone().unwrap_or_default(),
        ca_file: cloud.ca_file.as_deref().map(|p| answers.path(p)),
        timeout: cloud.timeout(),
        route: answers.cloud_route_from_answers(),
    })
    .map_err(|e| format!("the cloud cannot be asked: {e}"))?;
    let (dir, ad) = tokio::join!(client.directory(&key), read_ad(answers));
    let dir: DirectoryResponse =
        dir.map_err(|e| format!("the cloud's users could not be read: {e}; {}", e.fix()))?;
    let (objs, tier0, scope, sync_guid, selected) = ad?;
    let direction = answers.sync.direction;
    let from_ad = if direction.from_ad() {
        let mut source = answers.source_scope(None)?;
        // The service account is never sent: found among the domain's users by name.
        let account = AccountName::parse(&answers.service_account.username)
            .map_err(|e| format!("the service account name {e}"))?;
        source.service_account = objs
            .iter()
            .find(|o| o.is_user && o.sam.eq_ignore_ascii_case(account.user()))
            .map(|o| o.guid.clone());
        let domain = scope
            .domain_dn()
            .ok_or("the Root User container names no domain")?;
        Some(super::source::from_ad(
            &objs,
            selected.as_ref(),
            &tier0,
            &source,
            &dir,
            &domain,
        ))
    } else {
        None
    };
    // What AD is the authority of never travels from the cloud to AD: not part of that
    // direction's first sync (it would show as a collision with its own AD object).
    let to_ad = |e: &&crate::cloud::api::DirectoryEntry| e.source != "ad";
    let users: Vec<CloudObject> = dir
        .users
        .iter()
        .filter(to_ad)
        .map(CloudObject::from)
        .collect();
    let groups: Vec<CloudObject> = dir
        .groups
        .iter()
        .filter(to_ad)
        .map(CloudObject::from)
        .collect();
    let rules = Rules {
        scope: &scope,
        sync_group_guid: sync_guid.as_deref(),
        tier0: &tier0,
        adopt_users: answers.sync.adopt_existing_users,
        adopt_groups: answers.sync.adopt_existing_groups,
    };
    Ok(Looked {
        preview: direction
            .to_ad()
            .then(|| adopt::preview(&users, &groups, &objs, &rules)),
        from_ad,
        ad_objects: objs.len(),
        cloud_users: users.len(),
        cloud_groups: groups.len(),
    })
}

/// The domain's users and groups, who holds power, the containers, the sync group's GUID, and
/// the users AD as a source's groups and filter select (when it has either).
type AdView = (
    Vec<Obj>,
    crate::tier0::Tier0,
    Scope,
    Option<Vec<u8>>,
    Option<std::collections::HashSet<Vec<u8>>>,
);

/// The domain's users and groups (every one: a same-named object outside the containers is a
/// collision the preview must show), the privileged ones and the sync group, read as the
/// service account.
async fn read_ad(answers: &Answers) -> Result<AdView, String> {
    let scope = Scope::from_answers(answers)?;
    let dns_domain = scope.dns_domain.clone();
    let domain_dn = scope
        .domain_dn()
        .map(|d| d.to_comma_form())
        .unwrap_or_default();
    let (session, account) = logon(answers, &dns_domain).await?;
    let looked = async {
        let ldap = session.handle();
        let timeout = session.op_timeout();
        let read = |e: crate::directory::OpError| format!("reading the domain's users: {e}");
        let entries = object::search_paged(
            &ldap,
            timeout,
            &domain_dn,
            object::PEOPLE_FILTER,
            object::CLASSIFY_ATTRS,
        )
        .await
        .map_err(read)?;
        let tier0 = crate::directory::power::tier0(&ldap, timeout, &scope, Some(&account))
            .await
            .map_err(|e| format!("reading who holds power in the domain: {e}"))?;
        let objs: Vec<Obj> = entries.iter().map(object::object).collect();
        let sync_guid = scope.sync_group.as_ref().and_then(|g| {
            objs.iter()
                .find(|o| o.parsed.as_ref().is_some_and(|d| d.same_as(g)))
                .map(|o| o.guid.clone())
        });
        let source = answers.source_scope(None)?;
        let selected = if answers.sync.direction.from_ad()
            && (!source.groups.is_empty() || source.filter.is_some())
        {
            Some(super::source::selected_users(&session, &source).await?)
        } else {
            None
        };
        Ok::<_, String>((objs, tier0, sync_guid, selected))
    }
    .await;
    session.close().await;
    let (objs, tier0, sync_guid, selected) = looked?;
    Ok((objs, tier0, scope, sync_guid, selected))
}

/// A session to the configured DC, logged on as the service account (the checks that read the
/// domain as the agent will); `Err` says why not, pointing at the check that tells more.
pub(super) async fn logon(
    answers: &Answers,
    dns_domain: &str,
) -> Result<(crate::directory::Session, AccountName), String> {
    let opts = answers.connect_options(Some(dns_domain));
    let mut conn = crate::directory::connect(&opts).await;
    let mut session = conn
        .session
        .take()
        .ok_or("there is no connection to the domain controller (see dc.reachable)")?;
    let account = AccountName::parse(&answers.service_account.username)
        .map_err(|e| format!("the service account name {e}"))?;
    let password = answers
        .password()
        .map_err(|e| format!("the service account password is not available: {e}"))?;
    if session
        .simple_bind(&account.bind_name(dns_domain), &password)
        .await
        .is_err()
    {
        session.close().await;
        return Err("the service account cannot log on (see ldap.bind)".into());
    }
    Ok((session, account))
}

pub(super) fn names(list: &[(String, String)]) -> String {
    let mut out: Vec<String> = list
        .iter()
        .take(FIRST)
        .map(|(n, why)| format!("`{n}`: {why}"))
        .collect();
    if list.len() > FIRST {
        out.push(format!("and {} more", list.len() - FIRST));
    }
    out.join("; ")
}

fn line(kind: &str, c: &Counts) -> String {
    format!(
        "{kind}: {} created, {} adopted, {} already managed, {} collisions, {} protected",
        c.create,
        c.adopt,
        c.managed,
        c.collisions.len(),
        c.protected.len()
    )
}

/// The check's result: counts in the summary, the first names of each refusal in the detail;
/// each direction the config has, cloud → AD first.
pub fn result(l: &Looked) -> CheckResult {
    let mut summaries = Vec::new();
    let mut detail = vec![format!(
        "compared {} cloud users and {} cloud groups with {} AD users and groups",
        l.cloud_users, l.cloud_groups, l.ad_objects
    )];
    let mut fixes = Vec::new();
    if let Some(p) = &l.preview {
        let (summary, lines, fix) = to_ad_words(p, l.cloud_groups);
        summaries.push(summary);
        detail.extend(lines);
        fixes.extend(fix);
    }
    if let Some((users, groups)) = &l.from_ad {
        let (summary, lines, refused) = super::source::from_ad_words(users, groups);
        summaries.push(summary);
        detail.extend(lines);
        if refused {
            fixes.push("The refused AD objects will not reach the cloud: rename one of each pair (in AD or in the cloud), or link them first with `ad-sync-agent import`.".to_string());
        }
    }
    let summary = summaries.join("; ");
    if fixes.is_empty() {
        CheckResult::pass(SYNC_PREVIEW, summary, detail.join("\n"))
    } else {
        CheckResult::warn(SYNC_PREVIEW, summary, detail.join("\n"), fixes.join(" "))
    }
}

/// The cloud → AD direction's words: (summary, detail lines, the fix when some cloud objects
/// will not sync).
fn to_ad_words(p: &Preview, cloud_groups: usize) -> (String, Vec<String>, Option<String>) {
    let mut summary = format!("first sync: {}", line("users", &p.users));
    match &p.groups {
        Some(g) => summary.push_str(&format!("; {}", line("groups", g))),
        None => summary.push_str(&format!(
            "; groups: {cloud_groups} not synced (no sync group)"
        )),
    }
    let mut detail = Vec::new();
    let kinds = [("user", Some(&p.users)), ("group", p.groups.as_ref())];
    for (kind, c) in kinds {
        let Some(c) = c else { continue };
        if !c.collisions.is_empty() {
            detail.push(format!("{kind} collisions: {}", names(&c.collisions)));
        }
        if !c.protected.is_empty() {
            detail.push(format!(
                "{kind}s never taken over (protected): {}",
                names(&c.protected)
            ));
        }
    }
    let refused = kinds
        .iter()
        .filter_map(|(_, c)| *c)
        .any(|c| !c.collisions.is_empty() || !c.protected.is_empty());
    if !refused {
        return (summary, detail, None);
    }
    let adoptable = kinds
        .iter()
        .filter_map(|(_, c)| *c)
        .map(|c| c.adoptable)
        .sum::<usize>();
    let fix = if adoptable > 0 {
        format!(
            "These cloud objects will not sync. {adoptable} of them would be taken over with [sync] adopt_existing_users / adopt_existing_groups on (on the Sync settings page); for the others, rename one of each pair. Protected objects are never taken over."
        )
    } else {
        "These cloud objects will not sync: rename one of each pair (in AD or in the cloud), or move the AD account into the Root User container. Protected and privileged objects and distribution groups are never taken over.".to_string()
    };
    (summary, detail, Some(fix))
}
