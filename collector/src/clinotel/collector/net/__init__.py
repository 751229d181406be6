"""HTTP plumbing both HTTP ports share: binding every listener before anything is created
(`listen`), the threaded server and its timeouts (`server`), and request bodies (`body`)."""
