//! The swarm key gates every connection: a peer with the same key connects; a peer with another
//! key, or with no pnet at all, is refused before it can speak any protocol. Real sockets on
//! loopback.

use std::time::Duration;

use futures::StreamExt;
use libp2p::identity::Keypair;
use libp2p::swarm::{SwarmEvent, dummy};
use libp2p::{Multiaddr, Swarm, noise, tcp, yamux};
use tau_proto::{SwarmKey, net};

type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error>>;

fn swarm(key: &SwarmKey) -> Result<Swarm<dummy::Behaviour>> {
    Ok(net::swarm(Keypair::generate_ed25519(), key, Duration::from_secs(10), |_| dummy::Behaviour)?)
}

/// A swarm with TCP + noise + yamux but no pnet.
fn swarm_without_pnet() -> Result<Swarm<dummy::Behaviour>> {
    Ok(libp2p::SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_tcp(tcp::Config::default(), noise::Config::new, yamux::Config::default)?
        .with_behaviour(|_| dummy::Behaviour)?
        .build())
}

async fn listen(swarm: &mut Swarm<dummy::Behaviour>) -> Result<Multiaddr> {
    swarm.listen_on("/ip4/127.0.0.1/tcp/0".parse()?)?;
    loop {
        if let SwarmEvent::NewListenAddr { address, .. } = swarm.select_next_some().await {
            return Ok(address);
        }
    }
}

/// Dials `addr` from `dialer` while driving `listener`; true if the connection was established
/// on both sides, false if either side reported it failed.
async fn connects(
    listener: &mut Swarm<dummy::Behaviour>,
    dialer: &mut Swarm<dummy::Behaviour>,
    addr: Multiaddr,
) -> Result<bool> {
    dialer.dial(addr)?;
    let (mut dialed, mut accepted) = (false, false);
    let outcome = tokio::time::timeout(Duration::from_secs(15), async {
        loop {
            tokio::select! {
                event = listener.select_next_some() => match event {
                    SwarmEvent::ConnectionEstablished { .. } => accepted = true,
                    SwarmEvent::IncomingConnectionError { .. } => return false,
                    _ => {}
                },
                event = dialer.select_next_some() => match event {
                    SwarmEvent::ConnectionEstablished { .. } => dialed = true,
                    SwarmEvent::OutgoingConnectionError { .. } => return false,
                    _ => {}
                },
            }
            if dialed && accepted {
                return true;
            }
        }
    })
    .await?;
    Ok(outcome)
}

#[tokio::test]
async fn only_peers_with_the_same_swarm_key_connect() -> Result {
    let key = SwarmKey::generate();
    let mut node = swarm(&key)?;
    let addr = listen(&mut node).await?;

    let mut friend = swarm(&key)?;
    assert!(connects(&mut node, &mut friend, addr.clone()).await?, "same key must connect");

    let mut stranger = swarm(&SwarmKey::generate())?;
    assert!(!connects(&mut node, &mut stranger, addr.clone()).await?, "another key must fail");

    let mut plain = swarm_without_pnet()?;
    assert!(!connects(&mut node, &mut plain, addr).await?, "no pnet must fail");
    Ok(())
}
