//! What each sync policy does, in one table: the question the wizard asks, each choice's label
//! and the one sentence that says what the agent then does. The wizard's policy page, its Review
//! page, `ad-sync-setup review` and docs/agent.md all take their words from here, and each
//! choice carries a `Claim`, the behaviour its sentence promises, that the planner's table test
//! (`crates/agent/src/plan/tests.rs`, `every_policy_sentence_is_what_the_planner_does`) proves
//! against recorded directory data. A new choice without a claim the test knows fails there.

use crate::answers::{GroupDisconnection, MembershipSyncType, Sync, UserDisconnection};

/// One value of `[sync] direction`: the wizard's radio button and what the agent then does.
#[derive(Debug)]
pub struct DirectionChoice {
    pub direction: crate::answers::Direction,
    pub label: &'static str,
    /// What the agent does with it, in one sentence (docs/agent.md's table has the same words;
    /// the live tests in tests/agent.rs prove each).
    pub does: &'static str,
}

/// The question the wizard asks about the direction.
pub const DIRECTION_QUESTION: &str = "Which way do users travel between AD and the cloud?";

/// Every direction, in the wizard's order.
pub const DIRECTIONS: &[DirectionChoice] = &[
    DirectionChoice {
        direction: crate::answers::Direction::CloudToAd,
        label: "From the cloud to AD",
        does: "The cloud is the source: its users, groups, memberships and passwords are written to AD under the sync policies; nothing is sent from AD. Users the cloud mirrors from another forest come without passwords and stay disabled until they are given one.",
    },
    DirectionChoice {
        direction: crate::answers::Direction::AdToCloud,
        label: "From AD to the cloud",
        does: "AD is the source: the users and groups in the scope you choose next, with their members, are sent to the cloud and kept in step; nothing is written to AD. Passwords stay in AD, also when the cloud mirrors this domain into another forest.",
    },
    DirectionChoice {
        direction: crate::answers::Direction::Both,
        label: "Both ways",
        does: "Each object's source is where it was made: users and groups in the scope you choose next are sent to the cloud, the cloud's own are written to AD, and no change travels back to where it came from.",
    },
];

/// The words for `d`.
pub fn direction_choice(d: crate::answers::Direction) -> &'static DirectionChoice {
    DIRECTIONS
        .iter()
        .find(|c| c.direction == d)
        .unwrap_or(&DIRECTIONS[0])
}

/// The behaviour a sentence promises, in terms the planner's test can check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Claim {
    /// A disconnected user's AD account is deleted.
    UserDeleted,
    /// ... is disabled and its marker removed.
    UserDisabledAndReleased,
    /// ... keeps its enabled state; only the marker is removed.
    UserReleased,
    /// A disconnected group is deleted.
    GroupDeleted,
    /// ... keeps its members; only the marker is removed.
    GroupReleased,
    /// A disconnected user is taken out of every managed group first.
    LeaverLeavesGroups,
    /// ... keeps those memberships.
    LeaverKeepsGroups,
    /// A membership that ends in the cloud is removed in AD (the user stays managed).
    EndedMembershipRemoved,
    /// Members an administrator added in AD by hand are never removed.
    HandAddedMembersStay,
    /// A group's AD members are its direct cloud members only.
    DirectMembersOnly,
    /// Users of nested cloud groups are made direct members too.
    NestedUsersFlattened,
    /// An AD lockout is cleared on any update of an unlocked cloud user.
    UnlockOnAnyUpdate,
    /// ... only when the cloud user is explicitly unlocked (locked, then not).
    UnlockOnExplicitUnlock,
    /// A lock in the cloud never locks the AD account.
    NeverLocks,
    /// An unmanaged account with a cloud user's name is taken over.
    UsersAdopted,
    /// ... is reported as a collision and left alone.
    UsersCollide,
    /// An unmanaged security group with a cloud group's name is taken over.
    GroupsAdopted,
    /// ... is reported as a collision and left alone.
    GroupsCollide,
}

/// One value of a policy.
#[derive(Debug)]
pub struct Choice {
    /// As written in the config (`remove`, `true`).
    pub value: &'static str,
    /// The wizard's radio button (without "(default)", which is added for the default).
    pub label: &'static str,
    /// What the agent does with this value, in one sentence.
    pub does: &'static str,
    pub claim: Claim,
}

/// One policy of `[sync]`.
#[derive(Debug)]
pub struct Policy {
    /// Its key in `[sync]`.
    pub key: &'static str,
    /// The question the wizard asks.
    pub question: &'static str,
    /// A short name for Review's rows.
    pub name: &'static str,
    pub choices: &'static [Choice],
    /// What holds whatever is chosen (shown under the choices), with its claim.
    pub always: &'static [(&'static str, Claim)],
    get: fn(&Sync) -> &'static str,
    set: fn(&mut Sync, &str),
}

impl Policy {
    /// The value `sync` holds, as written in the config.
    pub fn value(&self, sync: &Sync) -> &'static str {
        (self.get)(sync)
    }

    /// Sets the value written `value`; an unknown one changes nothing.
    pub fn set(&self, sync: &mut Sync, value: &str) {
        (self.set)(sync, value)
    }

    /// The choice `sync` holds.
    pub fn chosen(&self, sync: &Sync) -> &'static Choice {
        let v = self.value(sync);
        self.choices
            .iter()
            .find(|c| c.value == v)
            .unwrap_or(&self.choices[0])
    }

    /// The default's value.
    pub fn default_value(&self) -> &'static str {
        self.value(&Sync::default())
    }

    /// A choice's radio label, with "(default)" on the default.
    pub fn label(&self, choice: &Choice) -> String {
        if choice.value == self.default_value() {
            format!("{} (default)", choice.label)
        } else {
            choice.label.to_string()
        }
    }
}

fn bool_value(b: bool) -> &'static str {
    if b { "true" } else { "false" }
}

pub const POLICIES: &[Policy] = &[
    Policy {
        key: "user_disconnection_action",
        question: "When a user leaves the cloud directory (or is no longer synced here)",
        name: "Users that leave",
        choices: &[
            Choice {
                value: "disable",
                label: "Disable the AD account",
                does: "The AD account is disabled and no longer managed; it and its attributes stay in AD.",
                claim: Claim::UserDisabledAndReleased,
            },
            Choice {
                value: "retain",
                label: "Keep the AD account as it is",
                does: "The AD account stays as it is, enabled if it was, and is no longer managed.",
                claim: Claim::UserReleased,
            },
            Choice {
                value: "remove",
                label: "Delete the AD account",
                does: "The AD account is deleted.",
                claim: Claim::UserDeleted,
            },
        ],
        always: &[],
        get: |s| match s.user_disconnection_action {
            UserDisconnection::Disable => "disable",
            UserDisconnection::Retain => "retain",
            UserDisconnection::Remove => "remove",
        },
        set: |s, v| match v {
            "disable" => s.user_disconnection_action = UserDisconnection::Disable,
            "retain" => s.user_disconnection_action = UserDisconnection::Retain,
            "remove" => s.user_disconnection_action = UserDisconnection::Remove,
            _ => {}
        },
    },
    Policy {
        key: "membership_disconnection_action",
        question: "The AD groups of a user who leaves",
        name: "Groups of users that leave",
        choices: &[
            Choice {
                value: "remove",
                label: "Take the account out of the groups the agent manages",
                does: "Before that, the account is taken out of every group the agent manages.",
                claim: Claim::LeaverLeavesGroups,
            },
            Choice {
                value: "retain",
                label: "Leave the account in those groups",
                does: "The account stays a member of the groups the agent manages.",
                claim: Claim::LeaverKeepsGroups,
            },
        ],
        always: &[(
            "While a user stays, a membership that ends in the cloud is always removed from the AD group.",
            Claim::EndedMembershipRemoved,
        )],
        get: |s| match s.membership_disconnection_action {
            GroupDisconnection::Remove => "remove",
            GroupDisconnection::Retain => "retain",
        },
        set: |s, v| match v {
            "remove" => s.membership_disconnection_action = GroupDisconnection::Remove,
            "retain" => s.membership_disconnection_action = GroupDisconnection::Retain,
            _ => {}
        },
    },
    Policy {
        key: "group_disconnection_action",
        question: "When a group leaves the cloud directory",
        name: "Groups that leave",
        choices: &[
            Choice {
                value: "retain",
                label: "Keep the AD group",
                does: "The AD group and its members stay as they are; the group is no longer managed.",
                claim: Claim::GroupReleased,
            },
            Choice {
                value: "remove",
                label: "Delete the AD group",
                does: "The AD group is deleted.",
                claim: Claim::GroupDeleted,
            },
        ],
        always: &[],
        get: |s| match s.group_disconnection_action {
            GroupDisconnection::Retain => "retain",
            GroupDisconnection::Remove => "remove",
        },
        set: |s, v| match v {
            "retain" => s.group_disconnection_action = GroupDisconnection::Retain,
            "remove" => s.group_disconnection_action = GroupDisconnection::Remove,
            _ => {}
        },
    },
    Policy {
        key: "group_membership_sync_type",
        question: "Members of cloud groups nested in other groups",
        name: "Nested groups",
        choices: &[
            Choice {
                value: "minimal",
                label: "Nest the groups in AD as in the cloud",
                does: "A group's AD members are its direct cloud members, users and nested groups; AD's nesting gives the rest.",
                claim: Claim::DirectMembersOnly,
            },
            Choice {
                value: "match",
                label: "Also make their users direct members",
                does: "Every user of every cloud group nested in a group is also made a direct member of it.",
                claim: Claim::NestedUsersFlattened,
            },
        ],
        always: &[(
            "Only members the agent manages are added or removed: members added in AD by hand stay.",
            Claim::HandAddedMembersStay,
        )],
        get: |s| match s.group_membership_sync_type {
            MembershipSyncType::Minimal => "minimal",
            MembershipSyncType::Match => "match",
        },
        set: |s, v| match v {
            "minimal" => s.group_membership_sync_type = MembershipSyncType::Minimal,
            "match" => s.group_membership_sync_type = MembershipSyncType::Match,
            _ => {}
        },
    },
    Policy {
        key: "sync_account_locked_out_status",
        question: "Accounts locked out in AD",
        name: "Lockout",
        choices: &[
            Choice {
                value: "false",
                label: "Clear the AD lockout whenever the cloud updates an unlocked user",
                does: "An AD lockout is cleared whenever the cloud updates a user that is not locked there.",
                claim: Claim::UnlockOnAnyUpdate,
            },
            Choice {
                value: "true",
                label: "Clear it only when the user is unlocked in the cloud",
                does: "An AD lockout is cleared only when the user is unlocked in the cloud.",
                claim: Claim::UnlockOnExplicitUnlock,
            },
        ],
        always: &[(
            "A lock in the cloud never locks the AD account: AD cannot lock an account on request.",
            Claim::NeverLocks,
        )],
        get: |s| bool_value(s.sync_account_locked_out_status),
        set: |s, v| s.sync_account_locked_out_status = v == "true",
    },
    Policy {
        key: "adopt_existing_users",
        question: "AD accounts that already have a cloud user's username",
        name: "Existing accounts",
        choices: &[
            Choice {
                value: "false",
                label: "Leave them alone",
                does: "Such an account is reported as a collision and left alone; the cloud user is not synced.",
                claim: Claim::UsersCollide,
            },
            Choice {
                value: "true",
                label: "Take them over",
                does: "Such an account under the Root User container is managed from then on (names, enabled state, groups; its password stays until the cloud sets one); protected and privileged accounts never are.",
                claim: Claim::UsersAdopted,
            },
        ],
        always: &[],
        get: |s| bool_value(s.adopt_existing_users),
        set: |s, v| s.adopt_existing_users = v == "true",
    },
    Policy {
        key: "adopt_existing_groups",
        question: "AD security groups that already have a cloud group's name",
        name: "Existing groups",
        choices: &[
            Choice {
                value: "false",
                label: "Leave them alone",
                does: "Such a group is reported as a collision and left alone; the cloud group is not synced.",
                claim: Claim::GroupsCollide,
            },
            Choice {
                value: "true",
                label: "Take them over",
                does: "Such a group beside the sync group is managed from then on, keeping the members AD gave it; protected and privileged groups never are.",
                claim: Claim::GroupsAdopted,
            },
        ],
        always: &[],
        get: |s| bool_value(s.adopt_existing_groups),
        set: |s, v| s.adopt_existing_groups = v == "true",
    },
];

/// Every policy as (its short name, the sentence of the value `sync` holds).
pub fn sentences(sync: &Sync) -> Vec<(&'static str, &'static str)> {
    POLICIES
        .iter()
        .map(|p| (p.name, p.chosen(sync).does))
        .collect()
}

/// The most disconnections (deletions, disables, releases and suspensions) allowed within
/// `deletion_window_hours` when the agent manages `managed` users and groups: the smaller of
/// `deletion_threshold` and `deletion_threshold_percent` of `managed`, rounded up. The planner
/// holds back whatever goes over it.
pub fn budget(managed: usize, sync: &Sync) -> usize {
    let pct = (managed * sync.deletion_threshold_percent as usize).div_ceil(100);
    pct.min(sync.deletion_threshold as usize)
}

/// A number with thousands separators: 1,240.
pub fn count(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// What the deletion threshold means, in a sentence: for `managed` objects when the agent
/// manages some, else for an example size.
pub fn threshold_sentence(sync: &Sync, managed: Option<usize>) -> String {
    let window = match sync.deletion_window_hours {
        1 => "1 hour".to_string(),
        h => format!("{} hours", count(h as usize)),
    };
    let rule = format!(
        "At most {} % of the users and groups the agent manages, and never more than {}, are deleted, disabled, suspended or released within {window}; the rest are held until you approve them (ad-sync-agent pending).",
        sync.deletion_threshold_percent,
        count(sync.deletion_threshold as usize)
    );
    match managed {
        Some(n) if n > 0 => format!(
            "{rule} Now: at most {} of the {} it manages.",
            count(budget(n, sync)),
            count(n)
        ),
        _ => format!(
            "{rule} The agent manages nothing yet; with 1,240 it would be at most {}.",
            count(budget(1240, sync))
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every direction has its words, and docs/agent.md says the same in its table.
    #[test]
    fn every_direction_is_described_once_and_the_doc_says_the_same() {
        let doc = include_str!("../../../docs/agent.md");
        for d in crate::answers::Direction::ALL {
            let c = direction_choice(d);
            assert_eq!(c.direction, d, "{d:?} has no words");
            let row = format!("| `{}` | {} |", d.as_str(), c.does);
            assert!(doc.contains(&row), "docs/agent.md lacks the row {row}");
        }
        assert_eq!(DIRECTIONS.len(), crate::answers::Direction::ALL.len());
    }

    #[test]
    fn every_choice_round_trips_through_the_config() {
        for p in POLICIES {
            assert!(!p.choices.is_empty(), "{}", p.key);
            for c in p.choices {
                let mut s = Sync::default();
                p.set(&mut s, c.value);
                assert_eq!(p.value(&s), c.value, "{} = {}", p.key, c.value);
                // The config's own words: the value as serde writes it under the key.
                let text = toml::to_string(&s).unwrap_or_else(|e| panic!("{e}"));
                let line = format!("{} = {}", p.key, c.value);
                let quoted = format!("{} = \"{}\"", p.key, c.value);
                assert!(
                    text.lines().any(|l| l == line || l == quoted),
                    "{} = {} is not what the config says:\n{text}",
                    p.key,
                    c.value
                );
            }
            // The default is one of the choices.
            assert!(p.choices.iter().any(|c| c.value == p.default_value()));
        }
    }

    #[test]
    fn every_key_of_sync_has_a_policy_or_is_the_threshold() {
        let text = toml::to_string(&Sync {
            deletion_threshold: 1,
            deletion_threshold_percent: 1,
            deletion_window_hours: 1,
            ..Sync::default()
        })
        .unwrap_or_else(|e| panic!("{e}"));
        for line in text.lines().filter(|l| l.contains(" = ")) {
            let key = line.split(" = ").next().unwrap_or_default();
            assert!(
                POLICIES.iter().any(|p| p.key == key) || key.starts_with("deletion_"),
                "[sync] {key} has no sentence in POLICIES"
            );
        }
    }

    /// docs/agent.md says what every choice does in the table's own words.
    #[test]
    fn the_agent_doc_has_every_sentence() {
        let doc = include_str!("../../../docs/agent.md");
        for p in POLICIES {
            for c in p.choices {
                let row = format!("| `{}` | `{}` | {} |", p.key, c.value, c.does);
                assert!(doc.contains(&row), "docs/agent.md lacks: {row}");
            }
            for (text, _) in p.always {
                let row = format!("| `{}` | any | {text} |", p.key);
                assert!(doc.contains(&row), "docs/agent.md lacks: {row}");
            }
        }
    }

    #[test]
    fn no_sentence_uses_markup() {
        for p in POLICIES {
            let texts = p
                .choices
                .iter()
                .flat_map(|c| [c.label, c.does])
                .chain(p.always.iter().map(|(t, _)| *t))
                .chain([p.question, p.name]);
            for t in texts {
                assert!(!t.contains('`') && !t.contains("**"), "{t}");
            }
        }
    }

    #[test]
    fn the_budget_and_its_sentence() {
        let s = Sync::default();
        // (managed, budget): 10 % rounded up, at most 500.
        for (managed, want) in [
            (0, 0),
            (1, 1),
            (9, 1),
            (10, 1),
            (11, 2),
            (1240, 124),
            (10_000, 500),
        ] {
            assert_eq!(budget(managed, &s), want, "{managed}");
        }
        assert_eq!(count(1240), "1,240");
        assert_eq!(count(999), "999");
        assert_eq!(count(1_000_000), "1,000,000");
        let t = threshold_sentence(&s, Some(1240));
        assert!(t.contains("at most 124 of the 1,240 it manages"), "{t}");
        assert!(
            t.contains("10 %") && t.contains("500") && t.contains("24 hours"),
            "{t}"
        );
        let t = threshold_sentence(&s, None);
        assert!(t.contains("manages nothing yet"), "{t}");
    }
}
