//! The wizard's pickers read the directory the way the checks do: the same connection (LDAPS,
//! the CA file, the fallback rules), the same logon as the service account, and the words the
//! checks use when either fails. Reads only; dropping the future closes the connection.

use super::Status;
use super::evaluate;
use crate::answers::Answers;
use crate::directory::bind::AccountName;
use crate::directory::browse::{self, Level, Offer};
use crate::directory::{self, BindError, Session};
use crate::dn::Dn;

/// The children of `base` (the domain's naming context when `None`), read as the service
/// account; `Err` says in words what failed and what to do.
pub async fn level(
    answers: &Answers,
    base: Option<&str>,
    offer: Offer,
    name: &str,
    limit: usize,
) -> Result<Level, String> {
    let mut session = logon(answers).await?;
    let shown = base.unwrap_or("the domain");
    let read = async {
        let base = match base {
            Some(b) => b.to_string(),
            None => browse::naming_context(&mut session).await?,
        };
        browse::level(&mut session, &base, offer, name, limit).await
    }
    .await;
    session.close().await;
    read.map_err(|e| {
        let fix = match e.rc() {
            Some(32) => "it no longer exists (deleted or moved): open its parent again",
            Some(50) => {
                "the service account may not list it: give it Read (List contents) there, or type the DN in the field"
            }
            _ => "Retry, or type the DN in the field",
        };
        format!("listing {shown} failed: {e}; {fix}")
    })
}

/// A session logged on as the service account.
async fn logon(answers: &Answers) -> Result<Session, String> {
    let root = Dn::parse(&answers.directory.root_user_dn)
        .ok()
        .map(|p| p.dn);
    let opts = answers.connect_options(root.as_ref().and_then(Dn::domain).as_deref());
    let mut conn = directory::connect(&opts).await;
    let Some(mut session) = conn.session.take() else {
        let why = evaluate::connection(&conn)
            .into_iter()
            .find(|c| c.status == Status::Fail)
            .map(|c| format!("{} ({})", c.summary, c.fix))
            .unwrap_or_else(|| format!("there is no connection to {}", opts.host));
        return Err(why);
    };
    let account = AccountName::parse(&answers.service_account.username)
        .map_err(|e| format!("Service account {e}; fix it on the Service account page"))?;
    let nc = browse::naming_context(&mut session).await.map_err(|e| {
        format!(
            "{} did not name its domain: {e}; point Domain controller at an Active Directory DC",
            opts.host
        )
    })?;
    let domain = Dn::parse(&nc)
        .ok()
        .and_then(|p| p.dn.domain())
        .unwrap_or_default();
    let password = answers
        .password()
        .map_err(|e| format!("the service account's password is not available: {e}"))?;
    let bind_name = account.bind_name(&domain);
    match session.simple_bind(&bind_name, &password).await {
        Ok(()) => Ok(session),
        Err(BindError::Refused {
            reason,
            server_text,
        }) => {
            let c = evaluate::bind_refused(&bind_name, reason, &server_text);
            Err(format!("{}. {}", c.summary, c.fix))
        }
        Err(BindError::Op(e)) => Err(format!(
            "logging on as `{bind_name}` failed: {e}; check that the DC answers (the Service account page), then Retry"
        )),
    }
}
