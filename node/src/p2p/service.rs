//! How a protocol is served and called: [`tau_proto::net::rpc`] does the streams, in each
//! connection's own task; a service gets each request decoded, as an [`Inbound`] with a oneshot
//! for the answer, and never sees a libp2p type but [`PeerId`].

use libp2p::PeerId;

pub use tau_proto::net::rpc::Inbound;

/// Why an outbound request got no answer.
#[derive(Debug, Clone, thiserror::Error)]
#[error("request to {peer} failed: {reason}")]
#[allow(missing_docs, reason = "a variant's fields are the parts of its message")]
pub struct RequestError {
    pub peer: PeerId,
    /// Why.
    pub reason: String,
    /// Whether the peer's service can never have seen the request (it could not be reached,
    /// does not serve the protocol, or the request was too large to send): a call that changes
    /// state may then go to another peer without doing it twice.
    pub undelivered: bool,
}

#[cfg(test)]
mod tests {
    //! Two in-process p2p cores serve and call a protocol that only this test defines: the
    //! core needs no edit for a new protocol.

    use std::time::{Duration, Instant};

    use libp2p::Multiaddr;
    use libp2p::identity::Keypair;
    use serde::{Deserialize, Serialize};
    use tau_proto::SwarmKey;
    use tau_proto::admin::Resources;
    use tokio::sync::{mpsc, watch};
    use tokio_util::sync::CancellationToken;

    use std::sync::Arc;

    use tau_proto::net::rpc::MAX_IN_FLIGHT_PER_PEER;

    use super::Inbound;
    use crate::p2p::{self, AdminContext, Handle, P2pConfig};

    /// A protocol the p2p core has never heard of.
    struct Echo;

    #[derive(Debug, Serialize, Deserialize)]
    struct Shout(String);

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Heard {
        from: String,
        text: String,
    }

    impl tau_proto::protocol::Protocol for Echo {
        const NAME: &'static str = "/tau/test-echo/1";
        const MAX_REQUEST: u64 = 64;
        const TIMEOUT: Duration = Duration::from_secs(2);
        type Request = Shout;
        type Response = Heard;
    }

    /// The same protocol as a careless caller sees it: with no limit of its own.
    struct LooseEcho;

    impl tau_proto::protocol::Protocol for LooseEcho {
        const NAME: &'static str = Echo::NAME;
        const TIMEOUT: Duration = Duration::from_secs(2);
        type Request = Shout;
        type Response = Heard;
    }

    async fn node(
        swarm_key: &SwarmKey,
        bootstrap: Vec<Multiaddr>,
        shutdown: &CancellationToken,
    ) -> anyhow::Result<(Handle, Multiaddr)> {
        let keypair = Keypair::generate_ed25519();
        let peer = keypair.public().to_peer_id();
        let (_, resources) = watch::channel(Resources::default());
        let config = P2pConfig {
            keypair,
            swarm_key: *swarm_key,
            listen: vec!["/ip4/127.0.0.1/tcp/0".parse()?],
            announce: Vec::new(),
            bootstrap,
            admin: AdminContext {
                services: Vec::new(),
                location: None,
                started: Instant::now(),
                resources,
                leaving: tokio::sync::watch::channel(false).1,
                ready: tokio::sync::watch::channel(true).1,
            },
            admitted: tau_proto::membership::Admitted::Open,
            connections: Default::default(),
        };
        let (handle, _task) = p2p::spawn(config, shutdown.child_token()).await?;
        let listen = handle.listen_addrs().await?;
        let addr = listen.first().ok_or_else(|| anyhow::anyhow!("no listen address"))?.clone();
        Ok((handle, addr.with_p2p(peer).map_err(|_| anyhow::anyhow!("bad address"))?))
    }

    #[tokio::test]
    async fn a_protocol_the_core_does_not_know_is_served_and_called() -> anyhow::Result<()> {
        let shutdown = CancellationToken::new();
        let swarm_key = SwarmKey::generate();
        let (server, server_addr) = node(&swarm_key, Vec::new(), &shutdown).await?;
        let (client, _) = node(&swarm_key, vec![server_addr], &shutdown).await?;
        let deadline = Instant::now() + Duration::from_secs(10);
        while !client.peers().await?.iter().any(|p| p.peer_id == server.peer_id()) {
            anyhow::ensure!(Instant::now() < deadline, "the two nodes did not connect in 10 s");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }

        let (inbox, mut requests) = mpsc::channel::<Inbound<Shout, Heard>>(256);
        server.serve::<Echo>(inbox).await?;
        let (served, mut texts) = mpsc::unbounded_channel();
        let hold = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let holding = hold.clone();
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Some(Inbound { peer, request, reply }) = requests.recv().await {
                let _ = served.send(request.0.clone());
                if holding.load(std::sync::atomic::Ordering::SeqCst) {
                    held.push(reply);
                    continue;
                }
                held.clear();
                let _ = reply.send(Heard { from: peer.to_string(), text: request.0 });
            }
        });

        let heard = client.call::<Echo>(server.peer_id(), Shout("hello".into())).await?;
        assert_eq!(heard, Heard { from: client.peer_id().to_string(), text: "hello".into() });

        assert_eq!(texts.recv().await.as_deref(), Some("hello"));

        // Over the protocol's 64-byte limit: the caller does not send it...
        let error = client
            .call::<Echo>(server.peer_id(), Shout("x".repeat(100)))
            .await
            .expect_err("a request over the limit must fail");
        assert!(error.reason.contains("limit of 64 bytes"), "{error}");
        // ...and a caller that does is refused by the server, which never serves it.
        let error = client
            .call::<LooseEcho>(server.peer_id(), Shout("y".repeat(100)))
            .await
            .expect_err("the server must refuse a request over the limit");
        assert!(
            !error.reason.contains("no answer within"),
            "refused at once, not timed out: {error}"
        );
        let heard = client.call::<Echo>(server.peer_id(), Shout("again".into())).await?;
        assert_eq!(heard.text, "again");
        assert_eq!(texts.recv().await.as_deref(), Some("again"), "the long request was served");

        // A peer cannot keep more than its share of requests in flight: the server holds every
        // request it gets, and only MAX_IN_FLIGHT_PER_PEER of a burst reach it.
        hold.store(true, std::sync::atomic::Ordering::SeqCst);
        let burst = (0..MAX_IN_FLIGHT_PER_PEER + 20)
            .map(|i| client.call::<Echo>(server.peer_id(), Shout(format!("held {i}"))));
        let results = futures::future::join_all(burst).await;
        assert!(results.iter().all(Result::is_err), "held requests time out or are refused");
        let mut reached = 0;
        while let Ok(text) = texts.try_recv() {
            reached += usize::from(text.starts_with("held"));
        }
        assert_eq!(reached, MAX_IN_FLIGHT_PER_PEER);
        hold.store(false, std::sync::atomic::Ordering::SeqCst);
        // Once the server has given up on them too (its own timeout, a moment after the
        // caller's), the peer is served again.
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(
            client.call::<Echo>(server.peer_id(), Shout("after".into())).await?.text,
            "after"
        );

        // A protocol the peer does not serve is refused at negotiation.
        let error = server
            .call::<Echo>(client.peer_id(), Shout("back".into()))
            .await
            .expect_err("the client does not serve Echo");
        assert!(error.reason.contains("does not serve /tau/test-echo/1"), "{error}");
        shutdown.cancel();
        Ok(())
    }
}
