//! The versions of the `anyu:model` contract this host runs, and which one a
//! component targets.
//!
//! Each version has its own generated bindings (`crate::bindings`) and its
//! own module here: the host side of its imports and the mapping between
//! Arrow and its WIT tables. A component's `anyu:model` imports name its
//! version; one that imports none is tried against each version's `run`,
//! newest first.

pub(crate) mod v0_1;
pub(crate) mod v0_2;

/// A version of the `anyu:model` contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Contract {
    /// `anyu:model@0.1.0`: columns as lists of options (value by value).
    V0_1,
    /// `anyu:model@0.2.0`: columns as plain lists plus a validity bitmap.
    V0_2,
}

/// The `anyu:model` interfaces a component may import, every supported
/// version.
pub const MODEL_INTERFACES: &[&str] = &[
    "anyu:model/types@0.2.0",
    "anyu:model/input@0.2.0",
    "anyu:model/log@0.2.0",
    "anyu:model/types@0.1.0",
    "anyu:model/input@0.1.0",
    "anyu:model/log@0.1.0",
];

impl Contract {
    /// Every version this host runs, newest first.
    pub const SUPPORTED: &[Contract] = &[Contract::V0_2, Contract::V0_1];

    /// The version new models should target.
    pub const CURRENT: Contract = Contract::V0_2;

    /// The package version, `0.2.0`.
    pub fn version(self) -> &'static str {
        match self {
            Contract::V0_1 => "0.1.0",
            Contract::V0_2 => "0.2.0",
        }
    }

    /// The world's full name, `anyu:model/model@0.2.0`.
    pub fn world(self) -> &'static str {
        match self {
            Contract::V0_1 => "anyu:model/model@0.1.0",
            Contract::V0_2 => "anyu:model/model@0.2.0",
        }
    }

    /// The version whose interface `name` is, if it is an `anyu:model` one
    /// this host runs.
    pub(crate) fn of_import(name: &str) -> Option<Contract> {
        if !MODEL_INTERFACES.contains(&name) {
            return None;
        }
        let version = name.rsplit_once('@')?.1;
        Contract::SUPPORTED
            .iter()
            .copied()
            .find(|c| c.version() == version)
    }
}

impl std::fmt::Display for Contract {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "anyu:model@{}", self.version())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn imports_name_their_version() {
        assert_eq!(
            Contract::of_import("anyu:model/input@0.1.0"),
            Some(Contract::V0_1)
        );
        assert_eq!(
            Contract::of_import("anyu:model/log@0.2.0"),
            Some(Contract::V0_2)
        );
        for other in [
            "anyu:model/input@0.3.0",
            "anyu:model/input@1.0.0",
            "anyu:model/secret@0.2.0",
            "wasi:io/streams@0.2.0",
        ] {
            assert_eq!(Contract::of_import(other), None, "{other}");
        }
        for c in Contract::SUPPORTED {
            let n = MODEL_INTERFACES
                .iter()
                .filter(|i| Contract::of_import(i) == Some(*c))
                .count();
            assert_eq!(n, 3, "{c}");
        }
    }
}
