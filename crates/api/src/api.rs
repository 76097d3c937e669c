//! The agent API's wire types (`/v1`), shared by the client and the reference server so the two
//! cannot drift apart. docs/cloud-api.md documents them with examples; a test checks that every
//! error code listed there is one the server really returns.
//!
//! Not here: transport (client.rs), storage and routing (server/).

use serde::{Deserialize, Serialize};

pub const API_VERSION: u32 = 1;

/// Every error the API returns: `{"error":{"code":"...","message":"..."}}` with this status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    MalformedJson,
    InvalidRequest,
    UnsupportedMediaType,
    BodyTooLarge,
    NotFound,
    MethodNotAllowed,
    Unauthorized,
    RateLimited,
    KeyMalformed,
    KeyUnknown,
    KeyUsed,
    KeyExpired,
    KeyRevoked,
    WrongDomain,
    NotPrimary,
    CursorMoved,
    RequestTimeout,
    Internal,
}

impl ErrorCode {
    pub const ALL: [ErrorCode; 18] = [
        ErrorCode::MalformedJson,
        ErrorCode::InvalidRequest,
        ErrorCode::UnsupportedMediaType,
        ErrorCode::BodyTooLarge,
        ErrorCode::NotFound,
        ErrorCode::MethodNotAllowed,
        ErrorCode::Unauthorized,
        ErrorCode::RateLimited,
        ErrorCode::KeyMalformed,
        ErrorCode::KeyUnknown,
        ErrorCode::KeyUsed,
        ErrorCode::KeyExpired,
        ErrorCode::KeyRevoked,
        ErrorCode::WrongDomain,
        ErrorCode::NotPrimary,
        ErrorCode::CursorMoved,
        ErrorCode::RequestTimeout,
        ErrorCode::Internal,
    ];

    pub fn http_status(self) -> u16 {
        match self {
            ErrorCode::MalformedJson | ErrorCode::InvalidRequest | ErrorCode::KeyMalformed => 400,
            ErrorCode::Unauthorized => 401,
            ErrorCode::NotFound | ErrorCode::KeyUnknown => 404,
            ErrorCode::MethodNotAllowed => 405,
            ErrorCode::RequestTimeout => 408,
            ErrorCode::KeyUsed | ErrorCode::NotPrimary | ErrorCode::CursorMoved => 409,
            ErrorCode::KeyExpired | ErrorCode::KeyRevoked => 410,
            ErrorCode::BodyTooLarge => 413,
            ErrorCode::UnsupportedMediaType => 415,
            ErrorCode::WrongDomain => 422,
            ErrorCode::RateLimited => 429,
            ErrorCode::Internal => 500,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::MalformedJson => "malformed_json",
            ErrorCode::InvalidRequest => "invalid_request",
            ErrorCode::UnsupportedMediaType => "unsupported_media_type",
            ErrorCode::BodyTooLarge => "body_too_large",
            ErrorCode::NotFound => "not_found",
            ErrorCode::MethodNotAllowed => "method_not_allowed",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::KeyMalformed => "key_malformed",
            ErrorCode::KeyUnknown => "key_unknown",
            ErrorCode::KeyUsed => "key_used",
            ErrorCode::KeyExpired => "key_expired",
            ErrorCode::KeyRevoked => "key_revoked",
            ErrorCode::WrongDomain => "wrong_domain",
            ErrorCode::NotPrimary => "not_primary",
            ErrorCode::CursorMoved => "cursor_moved",
            ErrorCode::RequestTimeout => "request_timeout",
            ErrorCode::Internal => "internal",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorDetail {
    /// Kept as text so a newer server's code still reaches the user.
    pub code: String,
    pub message: String,
}

/// `GET /v1/health`
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Health {
    pub status: String,
    pub version: String,
    pub api: u32,
}

/// What a connect key is, as the cloud sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyState {
    Valid,
    Malformed,
    Unknown,
    Used,
    Expired,
    WrongDomain,
    Revoked,
}

impl KeyState {
    pub fn as_str(self) -> &'static str {
        match self {
            KeyState::Valid => "valid",
            KeyState::Malformed => "malformed",
            KeyState::Unknown => "unknown",
            KeyState::Used => "used",
            KeyState::Expired => "expired",
            KeyState::WrongDomain => "wrong_domain",
            KeyState::Revoked => "revoked",
        }
    }
}

/// `POST /v1/keys/check`: never consumes the key.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyCheckRequest {
    pub key: String,
    /// The AD domain the key is meant for (any DN form); when given, a key bound to another
    /// domain instance answers `wrong_domain`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KeyCheckResponse {
    pub state: KeyState,
    /// The key's domain instance, comma form (known keys only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    /// RFC 3339, UTC (known keys only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub used_at: Option<String>,
    pub message: String,
}

/// `POST /v1/agents/enroll`: consumes the key, atomically.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnrollRequest {
    pub key: String,
    /// The domain the agent serves (its defaultNamingContext), any DN form.
    pub domain: String,
    pub host: String,
    pub version: String,
    #[serde(default)]
    pub os: String,
    /// X25519 public key, base64 (standard, padded): password changes are sealed to it.
    pub public_key: String,
}

#[derive(Clone, Serialize, Deserialize)]
pub struct EnrollResponse {
    pub agent_id: String,
    /// The agent's own credential (`Authorization: Bearer ...`). Shown once; the cloud keeps a hash.
    pub credential: String,
    /// True when this answers a repeated enrollment of an agent the key already enrolled (same
    /// key, same public key): `credential` is then a new credential sealed to the agent's public
    /// key (open it with the private key), and the previous one no longer works.
    #[serde(default)]
    pub resumed: bool,
    pub domain: String,
    pub role: Role,
    pub heartbeat_interval_seconds: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Primary,
    Standby,
}

/// `POST /v1/agents/heartbeat`
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeartbeatRequest {
    pub version: String,
    pub host: String,
    /// "ok" or "degraded"; `message` says why when degraded.
    #[serde(default)]
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// How the agent's runs went (absent from agents before 0.1 and from a standby that never
    /// ran).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run: Option<RunHealth>,
}

/// The agent's sync runs as the cloud's status page and alerts show them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunHealth {
    /// Disconnections held by the deletion threshold, waiting for approval.
    pub held: u64,
    /// Changes the last run failed.
    pub failed: u64,
    /// The last run that held nothing and failed nothing (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_success: Option<String>,
    /// The last run (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_run: Option<String>,
    /// AD as a source: the last full reconciliation that finished (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_reconcile: Option<String>,
    /// AD as a source: the backlog, suspensions of AD's objects held by the deletion threshold
    /// and waiting for approval (counted in `held` too).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub held_from_ad: u64,
}

fn is_zero<T: Default + PartialEq>(n: &T) -> bool {
    *n == T::default()
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HeartbeatResponse {
    pub role: Role,
    pub primary_agent_id: String,
    pub heartbeat_interval_seconds: u64,
    pub primary_timeout_seconds: u64,
    pub server_time: String,
}

/// `GET /v1/agents/self`: the agent as the cloud sees it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AgentSelf {
    pub agent_id: String,
    pub domain: String,
    pub host: String,
    pub version: String,
    pub role: Role,
    /// `healthy`, `late` or `silent`, as the status page shows it.
    pub health: String,
    pub enrolled_at: String,
    pub last_seen: String,
    /// False until the agent's first heartbeat (enrollment alone does not count).
    pub heard_from: bool,
}

/// `GET /v1/changes?after=N&limit=M`
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ChangesResponse {
    pub changes: Vec<Change>,
    /// Pass as `after` next time: the last seq returned, or `after` when there was nothing.
    pub cursor: i64,
    pub more: bool,
    /// The seq of the domain's last change (absent from older clouds): a cursor past it means
    /// the cloud was restored from a backup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub head: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    pub seq: i64,
    pub at: String,
    #[serde(flatten)]
    pub body: ChangeBody,
}

/// Each change carries the whole new state of what it names, so applying one twice is harmless.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum ChangeBody {
    #[serde(rename = "user.upsert")]
    UserUpsert { user: User },
    /// The user is disconnected from the domain (deleted in the cloud): the agent applies the
    /// user and membership disconnection policies. Removing a user also removes it from every
    /// group in the cloud.
    #[serde(rename = "user.remove")]
    UserRemove { id: String, username: String },
    /// The new password sealed (libsodium sealed box) to this agent's public key; `None` when
    /// the agent enrolled after the password was set, so the cloud never had it for this agent.
    #[serde(rename = "user.password")]
    UserPassword {
        id: String,
        username: String,
        sealed_password: Option<String>,
    },
    #[serde(rename = "group.upsert")]
    GroupUpsert { group: Group },
    #[serde(rename = "group.remove")]
    GroupRemove { id: String, name: String },
    #[serde(rename = "membership.add")]
    MembershipAdd(Membership),
    #[serde(rename = "membership.remove")]
    MembershipRemove(Membership),
}

/// A direct membership: `member` (a user or a group) is in `group`. Ids are what the agent
/// tracks; names are for people reading the feed.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Membership {
    pub group_id: String,
    pub group: String,
    pub member_id: String,
    pub member: String,
    pub member_type: MemberType,
}

/// A cloud user's whole state. `id` never changes; `username` may (a rename), and is what the
/// agent uses as sAMAccountName and the left part of the userPrincipalName.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    pub id: String,
    pub username: String,
    pub given_name: String,
    pub surname: String,
    #[serde(default)]
    pub email: Option<String>,
    pub suspended: bool,
    pub locked: bool,
    /// AD's displayName when the user was imported from AD (the agent writes
    /// "given surname" when there is none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    /// The AD objects this user was imported from or linked to, one per domain.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub links: Vec<AdLink>,
}

/// A cloud group. `id` never changes; `name` may (a rename).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Group {
    pub id: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub links: Vec<AdLink>,
}

/// A cloud object's AD counterpart in one domain: the object it was imported from (or linked
/// to by name), by objectGUID. The agent of that domain manages exactly that object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdLink {
    /// The domain's naming context, `DC=example,DC=com`.
    pub domain: String,
    /// objectGUID in its string form (`xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`).
    pub guid: String,
}

/// The link for `domain` among `links` (naming contexts compare as DNs).
pub fn link_for<'a>(links: &'a [AdLink], domain: &crate::dn::Dn) -> Option<&'a AdLink> {
    links
        .iter()
        .find(|l| crate::dn::Dn::parse(&l.domain).is_ok_and(|d| d.dn.same_as(domain)))
}

/// `POST /v1/keys/directory`: the names of the cloud's users and groups (with their AD links),
/// for the preview of the first sync. Takes a valid, unused connect key and never consumes it.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DirectoryRequest {
    pub key: String,
}

/// Most users (and, separately, groups) one directory answer lists; beyond: `truncated`.
pub const MAX_DIRECTORY_NAMES: usize = 100_000;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct DirectoryResponse {
    /// The key's domain instance, comma form.
    pub domain: String,
    pub users: Vec<DirectoryEntry>,
    pub groups: Vec<DirectoryEntry>,
    #[serde(default)]
    pub truncated: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirectoryEntry {
    pub id: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub links: Vec<AdLink>,
    /// `ad` when AD is its authority (AD as a source: it never travels from the cloud to AD);
    /// absent for the cloud's own.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub source: String,
}

/// Most objects one import request may carry (users, groups and memberships together).
pub const MAX_IMPORT_ITEMS: usize = 500;

/// `POST /v1/import`: AD objects to create in the cloud (or link to the cloud objects of the
/// same name), each by objectGUID. Idempotent: an object already linked is answered `already`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImportRequest {
    #[serde(default)]
    pub users: Vec<ImportUser>,
    #[serde(default)]
    pub groups: Vec<ImportGroup>,
    #[serde(default)]
    pub memberships: Vec<ImportMembership>,
    /// Answer what would happen; change nothing.
    #[serde(default)]
    pub dry_run: bool,
}

impl ImportRequest {
    pub fn len(&self) -> usize {
        self.users.len() + self.groups.len() + self.memberships.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImportUser {
    pub guid: String,
    pub username: String,
    pub given_name: String,
    pub surname: String,
    #[serde(default)]
    pub display_name: Option<String>,
    #[serde(default)]
    pub email: Option<String>,
    pub enabled: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImportGroup {
    pub guid: String,
    pub name: String,
}

/// `member_guid` (a user or a group, imported in this or an earlier request) is a direct
/// member of the group `group_guid`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImportMembership {
    pub group_guid: String,
    pub member_guid: String,
}

/// `GET /v1/source/cursor`: where the cloud's record of this domain's AD changes stands. A
/// reinstalled agent, or a standby that takes over, resumes from here, never from a cookie of
/// its own: a restored agent state cannot rewind the cloud.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceCursor {
    /// The DirSync cookie (base64) the last accepted batch ended at; absent before the first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cookie: Option<String>,
    /// The DC that cookie is from (a cookie is one DC's: another DC means a full read).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dc: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<i64>,
}

/// One user the cloud holds from AD in this domain, as `GET /v1/source/users` and
/// `POST /v1/source/lookup` list them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceHeld {
    /// Its objectGUID (lower case, no braces).
    pub guid: String,
    /// Its cloud id.
    pub id: String,
    /// Its cloud user name.
    pub name: String,
    /// Deleted in AD or moved out of the scope, kept suspended for the retention.
    #[serde(default)]
    pub deleted: bool,
    /// A group (`POST /v1/source/lookup` answers for users, groups and contacts alike).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub group: bool,
    /// A contact (its `name` is its e-mail address, which contacts are matched on).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub contact: bool,
}

/// `GET /v1/source/contacts?after=GUID`: the contacts the cloud holds from AD, as `SourceUsers`
/// lists the users.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceContacts {
    pub contacts: Vec<SourceHeld>,
    pub more: bool,
    /// As `SourceUsers::live`.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub live: usize,
}

/// One AD contact's change, by objectGUID (a `contact` object: a person with an e-mail address
/// and no account). `fields` are its rows of `mapping::ROWS` (the whole record whenever it is
/// sent). The cloud matches contacts on their e-mail address: one AD contact per address in a
/// domain, and a contact without one is refused.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceContact {
    pub guid: String,
    /// Deleted in AD or moved out of the scope: marked deleted and kept for the retention.
    #[serde(default)]
    pub deleted: bool,
    #[serde(default)]
    pub fields: std::collections::BTreeMap<String, String>,
}

/// `GET /v1/source/users?after=GUID`: the users the cloud holds from AD in the agent's domain, in
/// objectGUID order, at most `MAX_SOURCE_ITEMS` after `after`; `more` when there are others.
/// What the full reconciliation compares the scope with.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceUsers {
    pub users: Vec<SourceHeld>,
    pub more: bool,
    /// How many live (not deleted) objects, users and groups, the cloud holds from AD in this
    /// domain: what the deletion threshold's percentage is of. On a list's first page (no
    /// `after`) and in a lookup; left out of a list's later pages (read as 0).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub live: usize,
}

/// `GET /v1/source/groups?after=GUID`: the groups the cloud holds from AD, as `SourceUsers`
/// lists the users.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceGroups {
    pub groups: Vec<SourceHeld>,
    pub more: bool,
    /// As `SourceUsers::live`.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub live: usize,
}

/// `POST /v1/source/lookup`: which of these objectGUIDs (at most `MAX_SOURCE_ITEMS`) the cloud
/// holds from AD in the agent's domain. The answer is a `SourceUsers` (never `more`) with those
/// it holds, in objectGUID order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceLookup {
    pub guids: Vec<String>,
}

/// The largest request body the cloud takes (`body_too_large` above it): agents size their
/// batches by it.
pub const MAX_BODY_BYTES: usize = 256 * 1024;

/// The most objects in one `POST /v1/source/changes`.
pub const MAX_SOURCE_ITEMS: usize = 1000;

/// `POST /v1/source/changes` (the primary agent only): AD's changes, read from `after`, up to
/// `cookie`. The objects and the new cursor are committed in one transaction, and only when
/// `after` is where the cloud's cursor stands (`cursor_moved` otherwise); a batch sent again
/// after a lost answer (the cursor is already at `cookie`) is answered `replayed` and changes
/// nothing.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceRequest {
    /// The cookie this batch was read from; absent for a first, full read.
    #[serde(default)]
    pub after: Option<String>,
    /// The cookie after this batch (base64, not empty). Ignored when `partial`.
    #[serde(default)]
    pub cookie: String,
    /// One part of a DirSync page too large for one request: its users are committed, the
    /// cursor stays where it is (`after`); the page's last part, not partial, moves it.
    #[serde(default)]
    pub partial: bool,
    /// The DC it was read from.
    pub dc: String,
    #[serde(default)]
    pub users: Vec<SourceUser>,
    /// Groups, after the users (a group's new members may be among this batch's users).
    /// Users, groups and contacts together: at most `MAX_SOURCE_ITEMS`.
    #[serde(default)]
    pub groups: Vec<SourceGroup>,
    /// Contacts (matched on their e-mail address).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub contacts: Vec<SourceContact>,
}

/// One AD group's change, by objectGUID. `fields` are the changed cloud fields of the group's
/// rows of `mapping::ROWS` (`name`, `description`; the whole record for a new group); a field
/// sent empty is cleared. Its membership is AD's, by the members' objectGUIDs: `members` the
/// whole list (a full read), or the values `added` and `removed` since the last batch (what
/// DirSync's incremental values say). The cloud keeps these facts and shows as members the
/// users and groups it holds from this domain: a member that enters the scope later joins its
/// groups then, without the group being sent again.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceGroup {
    pub guid: String,
    /// Deleted in AD or moved out of the scope: kept, marked deleted, for the retention
    /// (restored with its members when it comes back with the same objectGUID).
    #[serde(default)]
    pub deleted: bool,
    #[serde(default)]
    pub fields: std::collections::BTreeMap<String, String>,
    /// The whole membership, replacing what the cloud had.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub members: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub added: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub removed: Vec<String>,
}

/// One AD user's change, by objectGUID. `fields` are the changed cloud fields of
/// `mapping::ROWS` (the whole record for a new user); a field sent empty is cleared.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceUser {
    pub guid: String,
    /// Deleted in AD or moved out of the scope: suspended in the cloud and kept (restored, with
    /// the same objectGUID, if it comes back).
    #[serde(default)]
    pub deleted: bool,
    /// userAccountControl's disabled bit, when it changed: a disabled AD account is a
    /// suspended cloud user.
    #[serde(default)]
    pub enabled: Option<bool>,
    #[serde(default)]
    pub fields: std::collections::BTreeMap<String, String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SourceOutcome {
    Created,
    Updated,
    Unchanged,
    /// Deleted in AD or out of scope: suspended and kept.
    Suspended,
    /// Back in AD with the same objectGUID: active again.
    Restored,
    /// Not taken; `message` says why and what to change in AD.
    Refused,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceItem {
    pub guid: String,
    /// The cloud user's or group's id (absent when refused before one existed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub outcome: SourceOutcome,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceResponse {
    /// The batch had been committed already (its answer was lost): nothing was changed.
    pub replayed: bool,
    /// One per object, in the request's order: the users, then the groups (empty when
    /// replayed).
    pub items: Vec<SourceItem>,
    pub cursor: SourceCursor,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ImportOutcome {
    /// A new cloud object, linked to the AD object.
    Created,
    /// An existing cloud object of that name, now linked to the AD object.
    Linked,
    /// Linked before (an earlier import): nothing to do.
    Already,
    /// Not imported; `message` says why.
    Refused,
}

/// One answer per item of the request, in its order (users, groups, memberships).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportItem {
    pub kind: String,
    /// The user's or group's name; `group <- member` for a membership.
    pub name: String,
    pub guid: String,
    pub outcome: ImportOutcome,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ImportResponse {
    pub items: Vec<ImportItem>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MemberType {
    User,
    Group,
}

impl MemberType {
    pub fn as_str(self) -> &'static str {
        match self {
            MemberType::User => "user",
            MemberType::Group => "group",
        }
    }
}

/// `POST /v1/changes/ack`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AckRequest {
    pub results: Vec<ChangeResult>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChangeResult {
    pub seq: i64,
    pub status: ApplyStatus,
    #[serde(default)]
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ApplyStatus {
    Applied,
    Skipped,
    Failed,
}

impl ApplyStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ApplyStatus::Applied => "applied",
            ApplyStatus::Skipped => "skipped",
            ApplyStatus::Failed => "failed",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AckResponse {
    pub recorded: usize,
    /// The highest seq up to which every change has a result from this domain.
    pub acked_cursor: i64,
}

// The key and the credential must not reach a log or a panic message through `{:?}`.
impl std::fmt::Debug for KeyCheckRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyCheckRequest")
            .field("key", &"[redacted]")
            .field("domain", &self.domain)
            .finish()
    }
}

impl std::fmt::Debug for EnrollRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EnrollRequest")
            .field("key", &"[redacted]")
            .field("domain", &self.domain)
            .field("host", &self.host)
            .field("version", &self.version)
            .field("os", &self.os)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for EnrollResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EnrollResponse")
            .field("agent_id", &self.agent_id)
            .field("credential", &"[redacted]")
            .field("domain", &self.domain)
            .field("role", &self.role)
            .finish_non_exhaustive()
    }
}

/// A domain instance as the API names it: the comma form of the DN, and the key the cloud
/// compares on (AD compares DNs case-insensitively, whichever separator was typed).
pub fn domain_key(dn: &crate::dn::Dn) -> String {
    dn.to_comma_form().to_lowercase()
}

/// Parses a domain instance DN: DC components only.
pub fn parse_domain_dn(text: &str) -> Result<crate::dn::Dn, String> {
    let parsed = crate::dn::Dn::parse(text).map_err(|e| {
        format!(
            "`{text}` is not a valid DN: {} (at character {})",
            e.message, e.position
        )
    })?;
    let dn = parsed.dn;
    if dn.rdns().iter().any(|r| !r.attr.eq_ignore_ascii_case("DC")) {
        return Err(format!(
            "`{text}` is not a domain: a domain instance has only DC= parts, like DC=example,DC=com"
        ));
    }
    Ok(dn)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_never_shows_a_key_or_a_credential() {
        let check = KeyCheckRequest {
            key: "ADS1-SECRET-KEY".into(),
            domain: None,
        };
        let enroll = EnrollRequest {
            key: "ADS1-SECRET-KEY".into(),
            domain: "DC=example,DC=com".into(),
            host: "dc1".into(),
            version: "1".into(),
            os: String::new(),
            public_key: String::new(),
        };
        let resp = EnrollResponse {
            agent_id: "agt-1".into(),
            credential: "ADSA1-SECRET-CRED".into(),
            resumed: false,
            domain: "DC=example,DC=com".into(),
            role: Role::Primary,
            heartbeat_interval_seconds: 30,
        };
        let all = format!("{check:?}{enroll:?}{resp:?}");
        assert!(!all.contains("SECRET"), "{all}");
        assert!(all.contains("agt-1") && all.contains("dc1"), "{all}");
    }

    #[test]
    fn domain_instances_compare_as_dns() {
        let a = parse_domain_dn("dc=Example;DC=COM").unwrap_or_else(|e| panic!("{e}"));
        let b = parse_domain_dn("DC=example,DC=com").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(domain_key(&a), domain_key(&b));
        assert!(parse_domain_dn("OU=Staff,DC=example,DC=com").is_err());
    }
}
