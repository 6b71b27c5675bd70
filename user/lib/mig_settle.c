// SPDX-License-Identifier: GPL-2.0-only
/*
 * The control channel of an undecided handover (Documentation/handover.rst):
 * when neither side can learn whether the destination got COMMIT, both keep
 * their guest paused and wait for an operator's settle command, which
 * reaches them through an abstract unix socket named by role and session
 * ("@kvmmig/source/<session>", "@kvmmig/dest/<session>").  One command per
 * connection, one answer: what the waiting side did or why it refused.
 * The same sockets carry postcopy recovery's commands, which name an address
 * (RESUME_AT, RECOVER_AT: Documentation/postcopy.rst).
 * Abstract names need no files to clean up and die with the process.
 */
#include <errno.h>
#include <poll.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "log.h"
#include "migrate.h"

#define MIG_SETTLE_REPLY_TIMEOUT_MS	60000

struct mig_settle_msg {
	int32_t status;		/* command: enum mig_settle_cmd; answer: 0 or -errno */
	uint32_t pad;
	uint64_t session;
	char msg[240];		/* the answer's explanation; a *_AT command's address */
};

static const char *const settle_names[MIG_SETTLE_MAX] = {
	[MIG_SETTLE_START] = "start",
	[MIG_SETTLE_RESUME] = "resume-source",
	[MIG_SETTLE_DISCARD] = "discard",
	[MIG_SETTLE_RESUME_AT] = "resume",
	[MIG_SETTLE_RECOVER_AT] = "recover",
};

const char *mig_settle_name(enum mig_settle_cmd cmd)
{
	return cmd < MIG_SETTLE_MAX ? settle_names[cmd] : "unknown";
}

static socklen_t mig_settle_addr(struct sockaddr_un *a, bool source, uint64_t session)
{
	int n;

	memset(a, 0, sizeof(*a));
	a->sun_family = AF_UNIX;
	/* sun_path[0] stays '\0': the abstract namespace. */
	n = snprintf(a->sun_path + 1, sizeof(a->sun_path) - 1, "kvmmig/%s/%016llx",
		     source ? "source" : "dest", (unsigned long long)session);
	return offsetof(struct sockaddr_un, sun_path) + 1 + n;
}

int mig_settle_listen(bool source, uint64_t session)
{
	struct sockaddr_un a;
	socklen_t len = mig_settle_addr(&a, source, session);
	int fd, err;

	fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return -errno;
	if (bind(fd, (struct sockaddr *)&a, len) || listen(fd, 4)) {
		err = errno;
		kvmmig_err("cannot open the settle socket @%s: %s", a.sun_path + 1, strerror(err));
		close(fd);
		return -err;
	}
	return fd;
}

int mig_settle_take(int lfd, uint64_t session, enum mig_settle_cmd *cmd)
{
	return mig_settle_take_at(lfd, session, cmd, NULL, 0);
}

int mig_settle_take_at(int lfd, uint64_t session, enum mig_settle_cmd *cmd, char *addr,
		       size_t len)
{
	struct mig_settle_msg m;
	struct timeval tv = { .tv_sec = 1 };
	int fd;

	fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
	if (fd < 0)
		return -errno;
	/* A client that connects and says nothing must not hold us up. */
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	if (recv(fd, &m, sizeof(m), 0) != sizeof(m) || m.session != session ||
	    m.status < 0 || m.status >= MIG_SETTLE_MAX) {
		mig_settle_reply(fd, -EINVAL, "not a settle command for this session");
		close(fd);
		return -EAGAIN;
	}
	*cmd = m.status;
	m.msg[sizeof(m.msg) - 1] = '\0';
	if (addr)
		snprintf(addr, len, "%s", m.msg);
	return fd;
}

void mig_settle_reply(int fd, int status, const char *msg)
{
	struct mig_settle_msg m = { .status = status };

	snprintf(m.msg, sizeof(m.msg), "%s", msg);
	if (send(fd, &m, sizeof(m), MSG_NOSIGNAL) != sizeof(m))
		kvmmig_info("the settle command went away before its answer");
}

int mig_settle(bool source, uint64_t session, enum mig_settle_cmd cmd, char *answer,
	       size_t len)
{
	return mig_settle_at(source, session, cmd, NULL, answer, len);
}

int mig_settle_at(bool source, uint64_t session, enum mig_settle_cmd cmd, const char *addr,
		  char *answer, size_t len)
{
	struct mig_settle_msg m = { .status = cmd, .session = session };
	struct sockaddr_un a;
	socklen_t alen = mig_settle_addr(&a, source, session);
	struct pollfd p = { .events = POLLIN };
	int ret;

	if (addr && strlen(addr) >= sizeof(m.msg)) {
		kvmmig_err("address too long for a settle command (%zu bytes, at most %zu): %s",
			   strlen(addr), sizeof(m.msg) - 1, addr);
		return -ENAMETOOLONG;
	}
	if (addr)
		snprintf(m.msg, sizeof(m.msg), "%s", addr);
	p.fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	if (p.fd < 0)
		return -errno;
	if (connect(p.fd, (struct sockaddr *)&a, alen)) {
		ret = -errno;
		kvmmig_err("no %s of session %016llx waits to be settled on this host (@%s: %s)",
			   source ? "source" : "destination", (unsigned long long)session,
			   a.sun_path + 1, strerror(-ret));
		close(p.fd);
		return ret;
	}
	if (send(p.fd, &m, sizeof(m), MSG_NOSIGNAL) != sizeof(m)) {
		ret = -errno;
		kvmmig_err("cannot send the settle command: %s", strerror(-ret));
	} else if (poll(&p, 1, MIG_SETTLE_REPLY_TIMEOUT_MS) != 1 ||
		   recv(p.fd, &m, sizeof(m), 0) != sizeof(m)) {
		kvmmig_err("the %s did not answer the settle command within %d s",
			   source ? "source" : "destination", MIG_SETTLE_REPLY_TIMEOUT_MS / 1000);
		ret = -ETIMEDOUT;
	} else {
		m.msg[sizeof(m.msg) - 1] = '\0';
		snprintf(answer, len, "%s", m.msg);
		ret = m.status;
		if (ret)
			kvmmig_err("the %s refused to %s: %s", source ? "source" : "destination",
				   mig_settle_name(cmd), m.msg);
	}
	close(p.fd);
	return ret;
}
