//! A `wss://` echo server from a PEM certificate and key.
//!
//! ```sh
//! cargo run -p ferrows --example wss_server -- cert.pem key.pem 127.0.0.1:9443
//! ```

use std::path::Path;

use tokio_rustls::TlsAcceptor;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let (Some(cert), Some(key)) = (args.get(1), args.get(2)) else {
        eprintln!("usage: wss_server CERT.pem KEY.pem [ADDR]");
        std::process::exit(2);
    };
    let addr = args.get(3).map_or("127.0.0.1:9443", String::as_str);
    let tls = ferrows::tls::server_config_from_files(Path::new(cert), Path::new(key))?;
    let acceptor = TlsAcceptor::from(tls);
    let listener = tokio::net::TcpListener::bind(addr).await?;
    println!("listening on wss://{}", listener.local_addr()?);
    loop {
        let (tcp, _) = listener.accept().await?;
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            let Ok(tls) = acceptor.accept(tcp).await else { return };
            let Ok(mut ws) = ferrows::accept(tls).await else { return };
            while let Some(Ok(message)) = ws.recv().await {
                if message.is_data() && ws.send(message).await.is_err() {
                    break;
                }
            }
        });
    }
}
