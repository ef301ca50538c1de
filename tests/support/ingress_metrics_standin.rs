//! STAND-IN for nginx-ingress's Prometheus endpoint (its image cannot run here): serves
//! `nginx_ingress_controller_requests` counters that grow at a fixed rate, as a controller
//! taking that many requests per second would report them.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

/// The running stand-in; stopped on drop.
pub struct IngressMetrics {
    /// Its /metrics URL.
    pub url: String,
    stop: Arc<AtomicBool>,
}

impl IngressMetrics {
    /// Serves counters growing by `per_second` in all (split over two series) on 127.0.0.1.
    pub fn start(per_second: f64) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let url = format!("http://{}/metrics", listener.local_addr().unwrap());
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let started = Instant::now();
        std::thread::spawn(move || {
            while !stopped.load(Ordering::Relaxed) {
                let Ok((mut conn, _)) = listener.accept() else {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                    continue;
                };
                conn.set_nonblocking(false).unwrap();
                let mut reader = BufReader::new(conn.try_clone().unwrap());
                let mut line = String::new();
                while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                    line.clear();
                }
                let total = per_second * started.elapsed().as_secs_f64();
                let body = format!(
                    "# HELP nginx_ingress_controller_requests The total number of client requests\n\
                     # TYPE nginx_ingress_controller_requests counter\n\
                     nginx_ingress_controller_requests{{ingress=\"web\",namespace=\"tool-a\",status=\"200\"}} {:.3}\n\
                     nginx_ingress_controller_requests{{ingress=\"web\",namespace=\"tool-b\",status=\"404\"}} {:.3}\n",
                    total * 0.75,
                    total * 0.25
                );
                let _ = write!(
                    conn,
                    "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        Self { url, stop }
    }
}

impl Drop for IngressMetrics {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}
