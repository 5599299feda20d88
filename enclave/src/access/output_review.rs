//! Output review's rules, as pure functions: who may vote on a result, and
//! when the votes release it. The domain loads the people and the votes and
//! asks these; nothing here reads a store.

use std::collections::BTreeSet;

use crate::identity::{Principal, Role, User};
use crate::{Error, Result};

/// Separation of duties for one vote: nobody reviews their own result (with
/// this account or another of theirs), nor one from their own organisation.
pub fn check_output_reviewer(reviewer: &Principal, requester: &User) -> Result<()> {
    if reviewer.user_id == requester.id || reviewer.person == requester.person {
        return Err(Error::Denied {
            code: "self_review",
            message: "nobody may review their own result".into(),
        });
    }
    if reviewer.organisation_id == requester.organisation_id {
        return Err(Error::Denied {
            code: "same_organisation",
            message: "nobody from the requester's organisation may review the result".into(),
        });
    }
    Ok(())
}

/// Output review follows the data the job read: a steward reviews a result
/// only when the job read data of one of their providers (`providers`, the
/// providers of the datasets read), whatever else the grant covers.
pub fn check_output_steward(reviewer: &Principal, providers: &[String]) -> Result<()> {
    if reviewer.role == Role::Steward
        && !providers
            .iter()
            .any(|p| reviewer.provider_agencies.contains(p))
    {
        return Err(Error::Denied {
            code: "not_a_provider_of_the_data",
            message: "this result was computed without your provider's data; its providers' stewards review it"
                .into(),
        });
    }
    Ok(())
}

/// A vote counts only from a reviewer who fetched the review packet of the
/// result as it stands now (`current`, the job's revision): nobody approves
/// what they have not seen.
pub fn check_packet_read(read_revision: Option<i64>, current: i64) -> Result<()> {
    if read_revision == Some(current) {
        Ok(())
    } else {
        Err(Error::Denied {
            code: "packet_not_read",
            message: "fetch this result's review packet (GET /api/jobs/{id}/review) before voting"
                .into(),
        })
    }
}

/// One vote per person: a reviewer whose person already voted on the result
/// (through another account) may not vote again.
pub fn check_one_vote_per_person(reviewer: &Principal, voters: &[User]) -> Result<()> {
    if voters
        .iter()
        .any(|v| v.id != reviewer.user_id && v.person == reviewer.person)
    {
        return Err(Error::Denied {
            code: "same_person",
            message: "this person has already voted on the result with another account; \
                      the votes must come from different people"
                .into(),
        });
    }
    Ok(())
}

/// One approving vote, as far as counting needs it: who cast it.
#[derive(Debug, Clone, Copy)]
pub struct Approval<'a> {
    pub role: Role,
    pub provider_agencies: &'a [String],
    /// The person behind the account ([`User::person`]).
    pub person: &'a str,
    /// The organisation's id.
    pub organisation_id: &'a str,
}

/// Whether approvals release a result: approvals by at least `required`
/// different persons (accounts of one person count once); for every provider
/// whose data the job read (`providers`) a steward of it — as in the
/// application review, each provider consents for its own data; and where two
/// or more are required (L3 and above), approvers from two organisations or a
/// platform administrator among them.
pub fn approvals_release(approvals: &[Approval<'_>], required: u32, providers: &[String]) -> bool {
    let every_provider = !providers.is_empty()
        && providers.iter().all(|x| {
            approvals
                .iter()
                .any(|a| a.role == Role::Steward && a.provider_agencies.contains(x))
        });
    let persons: BTreeSet<&str> = approvals.iter().map(|a| a.person).collect();
    let organisations: BTreeSet<&str> = approvals.iter().map(|a| a.organisation_id).collect();
    let independent =
        required < 2 || organisations.len() >= 2 || approvals.iter().any(|a| a.role == Role::Admin);
    persons.len() as u32 >= required && every_provider && independent
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::OrganisationType;
    use crate::identity::TokenKind;

    fn person(id: &str, org: &str, role: Role) -> Principal {
        Principal {
            user_id: id.into(),
            username: id.into(),
            role,
            organisation_id: org.into(),
            organisation: org.into(),
            organisation_type: OrganisationType::University,
            provider_agencies: Vec::new(),
            token_kind: TokenKind::Session,
            scopes: crate::identity::Scope::ALL.to_vec(),
            person: format!("person-of-{id}"),
            must_change_password: false,
        }
    }

    fn user(id: &str, org: &str, person: &str) -> User {
        User {
            id: id.into(),
            username: id.into(),
            real_name: "x".into(),
            organisation_id: org.into(),
            organisation: org.into(),
            organisation_type: OrganisationType::University,
            role: Role::Researcher,
            provider_agencies: Vec::new(),
            verified: true,
            person_bound: true,
            must_change_password: false,
            credit_flags: Vec::new(),
            disabled: false,
            created_at: String::new(),
            person: person.into(),
        }
    }

    #[test]
    fn nobody_reviews_their_own_or_their_organisations_result() {
        let requester = user("r1", "org-szu", "person-of-r1");
        let admin = person("a1", "org-platform", Role::Admin);
        assert!(check_output_reviewer(&admin, &requester).is_ok());
        let own = check_output_reviewer(&person("r1", "org-x", Role::Steward), &requester);
        assert_eq!(own.unwrap_err().code(), "self_review");
        let mut second_account = person("s9", "org-x", Role::Steward);
        second_account.person = "person-of-r1".into();
        let own = check_output_reviewer(&second_account, &requester);
        assert_eq!(
            own.unwrap_err().code(),
            "self_review",
            "another account of the requester"
        );
        let colleague = check_output_reviewer(&person("s1", "org-szu", Role::Steward), &requester);
        assert_eq!(colleague.unwrap_err().code(), "same_organisation");
    }

    #[test]
    fn one_person_votes_once_whatever_the_account() {
        let voters = vec![user("s1", "org-si", "p-wang")];
        let mut again = person("s2", "org-other", Role::Steward);
        again.person = "p-wang".into();
        assert_eq!(
            check_one_vote_per_person(&again, &voters)
                .unwrap_err()
                .code(),
            "same_person"
        );
        assert!(
            check_one_vote_per_person(&person("s3", "org-other", Role::Steward), &voters).is_ok()
        );
    }

    #[test]
    fn a_vote_needs_the_current_packet_read() {
        assert!(check_packet_read(Some(4), 4).is_ok());
        let unread = check_packet_read(None, 4).unwrap_err();
        assert_eq!(unread.code(), "packet_not_read");
        let stale = check_packet_read(Some(3), 4).unwrap_err();
        assert_eq!(stale.code(), "packet_not_read");
    }

    #[test]
    fn release_needs_enough_approvals_and_a_providers_steward() {
        let si = vec!["社保局".to_string()];
        let other = vec!["卫健委".to_string()];
        let steward = Approval {
            role: Role::Steward,
            provider_agencies: &si,
            person: "p-wang",
            organisation_id: "org-si",
        };
        let foreign_steward = Approval {
            role: Role::Steward,
            provider_agencies: &other,
            person: "p-zhao",
            organisation_id: "org-health",
        };
        let admin = Approval {
            role: Role::Admin,
            provider_agencies: &[],
            person: "p-zhang",
            organisation_id: "org-platform",
        };
        assert!(approvals_release(&[steward], 1, &si));
        assert!(
            !approvals_release(&[admin], 1, &si),
            "no steward of the data"
        );
        assert!(
            !approvals_release(&[foreign_steward], 1, &si),
            "another provider's steward"
        );
        assert!(
            !approvals_release(&[steward], 2, &si),
            "one approval of two"
        );
        assert!(approvals_release(&[admin, steward], 2, &si));
        assert!(!approvals_release(&[], 0, &si), "no vote releases nothing");
        let same_person = Approval {
            person: "p-wang",
            ..foreign_steward
        };
        assert!(
            !approvals_release(&[steward, same_person], 2, &si),
            "two accounts of one person are one approval"
        );
        let colleague = Approval {
            person: "p-liu",
            ..steward
        };
        assert!(
            !approvals_release(&[steward, colleague], 2, &si),
            "two of one organisation, no admin"
        );
        assert!(approvals_release(&[steward, foreign_steward], 2, &si));
        // Data of two providers: each one's steward approves.
        let both = vec!["社保局".to_string(), "卫健委".to_string()];
        assert!(!approvals_release(&[steward, admin], 2, &both));
        assert!(approvals_release(&[steward, foreign_steward], 2, &both));
    }

    #[test]
    fn only_stewards_of_the_data_read_review_it() {
        let mut s = person("s1", "社保局", Role::Steward);
        s.provider_agencies = vec!["社保局".into()];
        let mut other = person("s2", "卫健委", Role::Steward);
        other.provider_agencies = vec!["卫健委".into()];
        let read = vec!["社保局".to_string()];
        assert!(check_output_steward(&s, &read).is_ok());
        let e = check_output_steward(&other, &read).unwrap_err();
        assert_eq!(e.code(), "not_a_provider_of_the_data");
        assert!(check_output_steward(&person("a1", "平台", Role::Admin), &read).is_ok());
    }
}

/// Why a reviewer refused a release, in the words its researcher reads. The
/// reviewer's own comment stays with the reviewers: it was written beside
/// the unreleased values and may quote them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectionReason {
    DisclosureRisk,
    Differencing,
    OutsidePurpose,
    NotMeaningful,
    Other,
}

impl RejectionReason {
    pub const ALL: [RejectionReason; 5] = [
        RejectionReason::DisclosureRisk,
        RejectionReason::Differencing,
        RejectionReason::OutsidePurpose,
        RejectionReason::NotMeaningful,
        RejectionReason::Other,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RejectionReason::DisclosureRisk => "disclosure_risk",
            RejectionReason::Differencing => "differencing",
            RejectionReason::OutsidePurpose => "outside_purpose",
            RejectionReason::NotMeaningful => "not_meaningful",
            RejectionReason::Other => "other",
        }
    }

    /// The reason as a sentence for the researcher.
    pub fn words(self) -> &'static str {
        match self {
            RejectionReason::DisclosureRisk => {
                "the result could single out persons (small, dominated or identifying cells)"
            }
            RejectionReason::Differencing => {
                "together with earlier results the result concerns too few persons"
            }
            RejectionReason::OutsidePurpose => "the result is outside the grant's approved purpose",
            RejectionReason::NotMeaningful => "the result does not answer what the query asks",
            RejectionReason::Other => "another reason",
        }
    }

    pub fn parse(s: &str) -> Result<RejectionReason> {
        Self::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| {
                Error::InvalidArgument(format!(
                    "reason: one of {}",
                    Self::ALL.map(|r| r.as_str()).join(", ")
                ))
            })
    }
}

/// The longest note a reviewer may address to the researcher.
pub const MAX_NOTE_CHARS: usize = 500;

/// What the researcher reads of a rejection: the reason in words and the
/// reviewer's note to them, never who refused (blind review).
pub fn rejection_message(reason: RejectionReason, note: Option<&str>) -> String {
    match note.map(str::trim).filter(|n| !n.is_empty()) {
        Some(n) => format!(
            "an output reviewer refused the release: {}; the reviewer's note: {n}",
            reason.words()
        ),
        None => format!("an output reviewer refused the release: {}", reason.words()),
    }
}
