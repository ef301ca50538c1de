//! Small value types of the inventory that are written as strings: CIDRs and versions.

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

/// An IP network in CIDR notation whose address is the network address (`10.77.0.0/24`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr(pub ipnet::IpNet);

impl Cidr {
    /// Parses a CIDR known to be valid (used for built-in defaults only).
    pub(crate) fn parse_const(s: &str) -> Self {
        // Invariant: only called with literals from this crate, covered by tests.
        Self(
            s.parse()
                .unwrap_or_else(|_| unreachable!("bad built-in CIDR {s}")),
        )
    }

    /// The `n`th address of the network (the network address is the 0th), if it has one.
    pub fn nth(&self, n: u32) -> Option<std::net::IpAddr> {
        use std::net::IpAddr;
        match self.0 {
            ipnet::IpNet::V4(v4) => {
                let a = u32::from(v4.network()).checked_add(n)?;
                v4.contains(&std::net::Ipv4Addr::from(a))
                    .then(|| IpAddr::V4(a.into()))
            }
            ipnet::IpNet::V6(v6) => {
                let a = u128::from(v6.network()).checked_add(u128::from(n))?;
                v6.contains(&std::net::Ipv6Addr::from(a))
                    .then(|| IpAddr::V6(a.into()))
            }
        }
    }

    /// True when the two networks share any address.
    pub fn overlaps(&self, other: &Cidr) -> bool {
        self.0.contains(&other.0.network()) || other.0.contains(&self.0.network())
    }
}

impl FromStr for Cidr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let net: ipnet::IpNet = s
            .parse()
            .map_err(|_| format!("`{s}` is not a network in CIDR notation (like 10.77.0.0/24)"))?;
        if net.addr() != net.network() {
            return Err(format!(
                "`{s}` has host bits set; the network address is {}",
                net.trunc()
            ));
        }
        Ok(Self(net))
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl Serialize for Cidr {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Cidr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl JsonSchema for Cidr {
    fn schema_name() -> Cow<'static, str> {
        "Cidr".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "format": "cidr",
            "description": "An IP network in CIDR notation, such as 10.77.0.0/24.",
        })
    }
}

/// A release version `MAJOR.MINOR.PATCH`; a leading `v` is accepted and dropped.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Version(pub semver::Version);

impl Version {
    /// A version from its parts.
    pub fn new(major: u64, minor: u64, patch: u64) -> Self {
        Self(semver::Version::new(major, minor, patch))
    }

    /// `major.minor`, as in "Kubernetes 1.35".
    pub fn minor_str(&self) -> String {
        format!("{}.{}", self.0.major, self.0.minor)
    }
}

impl FromStr for Version {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bare = s.strip_prefix('v').unwrap_or(s);
        semver::Version::parse(bare).map(Self).map_err(|_| {
            format!("`{s}` is not a version of the form MAJOR.MINOR.PATCH (like 1.35.0)")
        })
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl Serialize for Version {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Version {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl JsonSchema for Version {
    fn schema_name() -> Cow<'static, str> {
        "Version".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "format": "version",
            "pattern": "^v?[0-9]+\\.[0-9]+\\.[0-9]+",
            "description": "A release version MAJOR.MINOR.PATCH, such as 1.35.0.",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidr_rejects_host_bits_and_garbage() {
        assert!("10.77.0.0/24".parse::<Cidr>().is_ok());
        let e = "10.77.0.5/24".parse::<Cidr>().unwrap_err();
        assert!(e.contains("10.77.0.0/24"), "{e}");
        assert!("10.77.0/24".parse::<Cidr>().is_err());
    }

    #[test]
    fn overlap_is_symmetric() {
        let a: Cidr = "10.0.0.0/8".parse().unwrap();
        let b: Cidr = "10.96.0.0/12".parse().unwrap();
        let c: Cidr = "192.168.0.0/16".parse().unwrap();
        assert!(a.overlaps(&b) && b.overlaps(&a));
        assert!(!a.overlaps(&c));
    }

    #[test]
    fn version_accepts_leading_v() {
        assert_eq!(
            "v1.35.2".parse::<Version>().unwrap(),
            Version::new(1, 35, 2)
        );
        assert!("1.35".parse::<Version>().is_err());
    }
}
