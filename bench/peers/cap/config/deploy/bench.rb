# One server per port of PEERS_PORTS ("40001 40002 ..."), all on 127.0.0.1.
ENV.fetch("PEERS_PORTS").split.each do |port|
  server "127.0.0.1", port: Integer(port), user: "root", roles: %w[app]
end
