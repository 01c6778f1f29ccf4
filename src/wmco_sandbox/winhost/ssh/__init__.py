"""The host's sshd: Win32-OpenSSH's exec and SFTP behaviour over asyncssh."""
