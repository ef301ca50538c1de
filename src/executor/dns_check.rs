//! The cluster's DNS checked from a node: a query for the API's Service name sent over TCP to
//! the cluster DNS Service IP, from the node itself (an SSH direct-tcpip connection: the node's
//! view of the Service network, through kube-proxy), answered with the API's Service IP.

use std::net::IpAddr;
use std::str::FromStr;
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, Query};
use hickory_proto::rr::{Name, RecordType};

use super::{ExecError, Executor};
use crate::plan::{Action, Op};

/// How long one query may take.
const QUERY_TIMEOUT: Duration = Duration::from_secs(5);

/// A DNS query for the A record of `name`, framed for TCP (two bytes of length first).
pub fn tcp_query(name: &str, id: u16) -> Result<Vec<u8>, String> {
    let name = Name::from_str(name).map_err(|e| format!("bad name {name}: {e}"))?;
    let mut m = Message::query();
    m.metadata.id = id;
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(name, RecordType::A));
    let body = m.to_vec().map_err(|e| e.to_string())?;
    let len = u16::try_from(body.len()).map_err(|_| "query too long".to_string())?;
    let mut out = len.to_be_bytes().to_vec();
    out.extend_from_slice(&body);
    Ok(out)
}

/// Whether `buf` holds a whole TCP-framed DNS message.
pub fn tcp_complete(buf: &[u8]) -> bool {
    buf.len() >= 2 && buf.len() >= 2 + usize::from(u16::from_be_bytes([buf[0], buf[1]]))
}

/// The addresses a TCP-framed answer to query `id` gives, or why it gives none.
pub fn tcp_answer(buf: &[u8], id: u16) -> Result<Vec<IpAddr>, String> {
    if !tcp_complete(buf) {
        return Err(format!("an incomplete answer ({} bytes)", buf.len()));
    }
    let m = Message::from_vec(&buf[2..]).map_err(|e| format!("an unreadable answer: {e}"))?;
    if m.metadata.id != id {
        return Err("an answer to another query".into());
    }
    let code = m.metadata.response_code;
    if code != hickory_proto::op::ResponseCode::NoError {
        return Err(format!("{code}"));
    }
    Ok(m.answers.iter().filter_map(|r| r.data.ip_addr()).collect())
}

impl Executor<'_> {
    /// Asks the cluster DNS for the action's name from its host until it answers with the
    /// expected address or the action's timeout ends.
    pub async fn check_dns(&self, a: &Action) -> Result<(), ExecError> {
        let (
            Some(host),
            Op::CheckDns {
                name,
                server,
                expect,
                timeout_s,
            },
        ) = (&a.host, &a.op)
        else {
            return Ok(());
        };
        let session = self.session_of(host).await?;
        let limit = super::kube_api::wait_limit(*timeout_s);
        let started = Instant::now();
        let mut id: u16 = 0x4647;
        loop {
            id = id.wrapping_add(1);
            let query = tcp_query(name, id).map_err(ExecError::Unsupported)?;
            let got = session
                .tcp_exchange(server, 53, &query, tcp_complete, QUERY_TIMEOUT)
                .await
                .map_err(|e| e.to_string())
                .and_then(|buf: Vec<u8>| tcp_answer(&buf, id));
            let why = match got {
                Ok(addrs) if addrs.iter().any(|a| a.to_string() == *expect) => return Ok(()),
                Ok(addrs) if addrs.is_empty() => "no address".to_string(),
                Ok(addrs) => format!(
                    "{} instead",
                    addrs
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                Err(e) => e,
            };
            if started.elapsed() >= limit {
                return Err(ExecError::Check(format!(
                    "{host}: the cluster DNS at {server}:53 (TCP) did not resolve {name} to {expect} within {} s: {why}",
                    limit.as_secs()
                )));
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_query_and_its_answer() {
        let q = tcp_query("kubernetes.default.svc.cluster.local.", 7).unwrap();
        assert!(tcp_complete(&q));
        assert!(!tcp_complete(&q[..q.len() - 1]));
        // An answer made from the query: same id, one A record.
        let mut m = Message::from_vec(&q[2..]).unwrap();
        m.metadata.message_type = hickory_proto::op::MessageType::Response;
        let name = m.queries[0].name().clone();
        m.answers.push(hickory_proto::rr::Record::from_rdata(
            name,
            30,
            hickory_proto::rr::RData::A("10.96.0.1".parse().unwrap()),
        ));
        let body = m.to_vec().unwrap();
        let mut buf = (body.len() as u16).to_be_bytes().to_vec();
        buf.extend_from_slice(&body);
        assert_eq!(
            tcp_answer(&buf, 7).unwrap(),
            vec!["10.96.0.1".parse::<IpAddr>().unwrap()]
        );
        assert!(tcp_answer(&buf, 8).is_err());
    }
}
