//! forgectl: build and run a multi-tenant Kubernetes platform from one inventory file.
//!
//! Data flows one way: inventory → facts → plan → phases → hosts. Phases plan actions as data;
//! the engine runs them. See the README, docs/ and ARCHITECTURE for the design.

pub mod accounts;
pub mod admission;
pub mod artifacts;
pub mod cluster_images;
pub mod commands;
pub mod dashboard;
pub mod engine;
pub mod error_chain;
pub mod etcd;
pub mod executor;
pub mod image_fetch;
pub mod images;
pub mod interrupt;
pub mod inventory;
pub mod jobs;
pub mod kube;
pub mod output;
pub mod own_executable;
pub mod phases;
pub mod pki;
pub mod plan;
pub mod playbook;
pub mod providers;
pub mod render;
pub mod ssh;
pub mod state;
pub mod tool_context;
pub mod webservice;
