"""Shared test harness: sshd hosts, git repos, forge stand-ins, services."""
