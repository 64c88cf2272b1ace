//! The membership and key rules, as pure functions: who may change a role or remove a member,
//! the at-least-one-owner rule, the last-break-glass-owner rule, and what an API key's name and expiry may be. The store calls
//! them inside its locked transaction with what it read there (the roles and the owner count
//! under the organization's row lock), so the rule and the data it judges cannot drift apart.
//! Tested here without a database.

use time::OffsetDateTime;

use crate::domain::{Role, UserId};
use crate::IdentityError;

/// What the store read under the organization's lock before a membership change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Roster {
    /// The acting user's role (`None`: not a member).
    pub actor_role: Option<Role>,
    /// The target member's role (`None`: not a member).
    pub target_role: Option<Role>,
    /// Owners the organization has now.
    pub owners: i64,
    /// Whether the target is a break-glass owner.
    pub target_break_glass: bool,
    /// Break-glass owners the organization has now.
    pub break_glass_owners: i64,
    /// Whether one of the organization's connections enforces single sign-on.
    pub sso_enforced: bool,
}

impl Roster {
    /// Whether taking the owner role from the target would leave no owner.
    fn target_is_last_owner(&self) -> bool {
        self.target_role == Some(Role::Owner) && self.owners <= 1
    }

    /// Whether taking the owner role from the target would leave an organization that enforces
    /// single sign-on without a break-glass owner (nobody left to enter if the identity
    /// provider breaks).
    pub fn target_is_last_break_glass(&self) -> bool {
        self.sso_enforced
            && self.target_break_glass
            && self.target_role == Some(Role::Owner)
            && self.break_glass_owners <= 1
    }

    /// The refusals both changes share: the last owner, the last break-glass owner.
    fn check_owner_leaves(&self) -> Result<(), IdentityError> {
        if self.target_is_last_owner() {
            return Err(IdentityError::LastOwner);
        }
        if self.target_is_last_break_glass() {
            return Err(IdentityError::LastBreakGlass);
        }
        Ok(())
    }
}

/// May the actor give the target role `to`? Returns the target's current role.
///
/// Only owners change roles; the last owner cannot be demoted, nor, while single sign-on is
/// enforced, the last break-glass owner.
pub fn change_role(roster: Roster, to: Role) -> Result<Role, IdentityError> {
    if roster.actor_role != Some(Role::Owner) {
        return Err(IdentityError::Forbidden("only owners may change roles"));
    }
    let from = roster.target_role.ok_or(IdentityError::NotFound)?;
    if to != Role::Owner {
        roster.check_owner_leaves()?;
    }
    Ok(from)
}

/// May `actor` remove `target`? Returns the target's role.
///
/// Owners remove anyone, a member removes itself, and nobody removes the last owner (an owner
/// leaving included: it must hand the role on first), nor, while single sign-on is enforced,
/// the last break-glass owner.
pub fn remove_member(actor: UserId, target: UserId, roster: Roster) -> Result<Role, IdentityError> {
    let actor_role = roster.actor_role.ok_or(IdentityError::NotFound)?;
    if actor != target && actor_role != Role::Owner {
        return Err(IdentityError::Forbidden(
            "only owners may remove other members",
        ));
    }
    let target_role = roster.target_role.ok_or(IdentityError::NotFound)?;
    roster.check_owner_leaves()?;
    Ok(target_role)
}

/// An API key's name: trimmed, 1–100 characters, no control characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKeyName(String);

impl ApiKeyName {
    /// The longest name, in characters.
    pub const MAX_CHARS: usize = 100;

    /// Parses a name as the owner typed it.
    pub fn parse(raw: &str) -> Result<ApiKeyName, IdentityError> {
        let name = raw.trim();
        if name.is_empty()
            || name.chars().count() > Self::MAX_CHARS
            || name.chars().any(char::is_control)
        {
            return Err(IdentityError::InvalidInput(
                "name must be 1-100 characters without control characters".into(),
            ));
        }
        Ok(ApiKeyName(name.to_owned()))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// An API key's expiry, if any, must lie in the future.
pub fn key_expiry(
    expires_at: Option<OffsetDateTime>,
    now: OffsetDateTime,
) -> Result<Option<OffsetDateTime>, IdentityError> {
    match expires_at {
        Some(t) if t <= now => Err(IdentityError::InvalidInput(
            "expires_at must be in the future".into(),
        )),
        other => Ok(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roster(actor: Option<Role>, target: Option<Role>, owners: i64) -> Roster {
        Roster {
            actor_role: actor,
            target_role: target,
            owners,
            target_break_glass: false,
            break_glass_owners: 0,
            sso_enforced: false,
        }
    }

    const O: Option<Role> = Some(Role::Owner);
    const M: Option<Role> = Some(Role::Member);

    #[test]
    fn only_owners_change_roles_and_the_last_owner_stays() {
        assert_eq!(change_role(roster(O, M, 1), Role::Owner).ok(), M);
        assert_eq!(change_role(roster(O, O, 2), Role::Member).ok(), O);
        assert!(matches!(
            change_role(roster(M, M, 1), Role::Owner),
            Err(IdentityError::Forbidden(_))
        ));
        assert!(matches!(
            change_role(roster(None, M, 1), Role::Owner),
            Err(IdentityError::Forbidden(_))
        ));
        assert!(matches!(
            change_role(roster(O, None, 1), Role::Owner),
            Err(IdentityError::NotFound)
        ));
        // The only owner demoting itself (or being demoted) is refused; promoting it again is
        // a no-op that keeps the owner.
        assert!(matches!(
            change_role(roster(O, O, 1), Role::Member),
            Err(IdentityError::LastOwner)
        ));
        assert_eq!(change_role(roster(O, O, 1), Role::Owner).ok(), O);
    }

    #[test]
    fn members_leave_owners_remove_and_the_last_owner_cannot_go() {
        let (a, b) = (UserId::generate(), UserId::generate());
        assert_eq!(remove_member(a, a, roster(M, M, 1)).ok(), M, "leaving");
        assert_eq!(remove_member(a, b, roster(O, M, 1)).ok(), M);
        assert_eq!(remove_member(a, b, roster(O, O, 2)).ok(), O);
        assert!(matches!(
            remove_member(a, b, roster(M, M, 1)),
            Err(IdentityError::Forbidden(_))
        ));
        assert!(matches!(
            remove_member(a, a, roster(O, O, 1)),
            Err(IdentityError::LastOwner)
        ));
        assert!(matches!(
            remove_member(a, b, roster(None, M, 1)),
            Err(IdentityError::NotFound)
        ));
        assert!(matches!(
            remove_member(a, b, roster(O, None, 1)),
            Err(IdentityError::NotFound)
        ));
    }

    #[test]
    fn the_last_break_glass_owner_stays_while_sso_is_enforced() {
        let (a, b) = (UserId::generate(), UserId::generate());
        let glass = |enforced: bool, break_glass_owners: i64| Roster {
            target_break_glass: true,
            break_glass_owners,
            sso_enforced: enforced,
            ..roster(O, O, 3)
        };
        assert!(matches!(
            change_role(glass(true, 1), Role::Member),
            Err(IdentityError::LastBreakGlass)
        ));
        assert!(matches!(
            remove_member(a, b, glass(true, 1)),
            Err(IdentityError::LastBreakGlass)
        ));
        assert!(matches!(
            remove_member(b, b, glass(true, 1)),
            Err(IdentityError::LastBreakGlass)
        ));
        assert_eq!(change_role(glass(true, 1), Role::Owner).ok(), O);
        assert_eq!(change_role(glass(true, 2), Role::Member).ok(), O);
        assert_eq!(change_role(glass(false, 1), Role::Member).ok(), O);
        assert_eq!(remove_member(a, b, glass(false, 1)).ok(), O);
    }

    #[test]
    fn key_names_are_trimmed_bounded_and_printable() {
        assert_eq!(
            ApiKeyName::parse("  deploy bot ").ok().map(|n| n.0),
            Some("deploy bot".to_owned())
        );
        assert!(ApiKeyName::parse(&"é".repeat(100)).is_ok());
        for bad in ["", "   ", "a\nb", "tab\there", &"x".repeat(101)] {
            assert!(ApiKeyName::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn key_expiry_lies_ahead() {
        let now = OffsetDateTime::now_utc();
        assert_eq!(key_expiry(None, now).ok(), Some(None));
        let later = now + time::Duration::minutes(1);
        assert_eq!(key_expiry(Some(later), now).ok(), Some(Some(later)));
        assert!(key_expiry(Some(now), now).is_err());
    }
}
