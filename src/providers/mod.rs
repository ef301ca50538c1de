//! Providers make and delete machines; they never touch SSH. `local` is here; OpenStack, Vagrant
//! and static hosts arrive with issue #5.

pub mod local;
pub mod openstack;
pub mod vagrant;
