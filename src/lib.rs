//! forgectl: build and run a multi-tenant Kubernetes platform from one inventory file.
//!
//! Data flows one way: inventory → facts → plan → phases → hosts. See ARCHITECTURE in the README.

pub mod inventory;
pub mod playbook;
