//! Peer discovery: the SRV lookup behind `/get` (resolv.conf, DNS wire format, cache).
