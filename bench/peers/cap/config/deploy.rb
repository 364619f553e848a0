# Stock Capistrano 3 settings for bench/peers.py (adapted from ../shared/peers/capistrano-bench.sh,
# see PROVENANCE.md). Every host is an sshd in a mount namespace of its own, so all of them share
# one deploy_to path, as N real machines would: no patch of Capistrano's path helpers is needed.
lock "~> 3.17"
set :application, "peers"
set :repo_url, ENV.fetch("PEERS_REPO_URL")
set :branch, "master"
set :keep_releases, Integer(ENV.fetch("PEERS_KEEP_RELEASES", "3"))
set :deploy_to, ENV.fetch("PEERS_DEPLOY_TO")
set :tmp_dir, "#{ENV.fetch("PEERS_DEPLOY_TO")}/tmp"   # the git-ssh wrapper, on the host's tmpfs
set :ssh_options, {
  user: "root",
  keys: [ENV.fetch("PEERS_CLIENT_KEY")], keys_only: true, use_agent: false,
  auth_methods: %w[publickey], non_interactive: true, config: false,
  verify_host_key: :always,
  user_known_hosts_file: ENV.fetch("PEERS_KNOWN_HOSTS"), global_known_hosts_file: "/dev/null",
}

# Not stock (PEERS_NODELAY=1, `--nodelay`): net-ssh 7.0 never sets TCP_NODELAY, so each command
# on an open connection waits on Nagle and delayed ACKs; its documented :proxy hook sets it.
if ENV["PEERS_NODELAY"] == "1"
  require "socket"
  class PeersNoDelaySocket
    def open(host, port, options = {})
      sock = Socket.tcp(host, port, nil, nil, connect_timeout: options[:timeout])
      sock.setsockopt(Socket::IPPROTO_TCP, Socket::TCP_NODELAY, 1)
      sock
    end
  end
  set :ssh_options, fetch(:ssh_options).merge(proxy: PeersNoDelaySocket.new)
end
