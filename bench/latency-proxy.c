// The download benchmark's latency proxy (bench/download.sh), in C: the same link as
// bench/latency-proxy.py, at a fraction of its CPU.
//
// This kernel has no netem, so the delay is added here: a new connection is held for one RTT
// before any byte passes (the handshake of a real link), and every chunk read from either side
// is forwarded half an RTT after it arrived. Chunks are delayed, not serialised: a chunk is
// scheduled when it arrives and sent when its time comes, so the link keeps its bandwidth and
// only gains latency (as a long, fat pipe does). Order within a direction is kept. With
// MBYTES_PER_S, downstream bytes (server to client) of all connections together are also capped
// at that rate: a chunk leaves once the link has carried the chunks before it (one shared link).
//
// Why not the Python one: at 20 ms it took some 3 CPU-s for the 0.94 GB of the bench's release
// (asyncio's per-chunk work), on a 2-core machine where the clients measured compete for the
// CPU. A real link's latency costs the client machine nothing; the proxy should cost as little.
// One thread, epoll, a timerfd at the next chunk's time (nanoseconds: asyncio rounds its waits
// up to the millisecond), non-blocking sockets with TCP_NODELAY (as asyncio sets), at most 256
// chunks of 256 KiB queued a direction (the source is not read beyond that).
//
// usage: latency-proxy LISTEN_PORT UPSTREAM_PORT RTT_MS [MBYTES_PER_S]
// Listens on 127.0.0.1:LISTEN_PORT (0: pick one), forwards to 127.0.0.1:UPSTREAM_PORT, prints
// "listening PORT" on stdout once ready, runs until SIGTERM/SIGINT.
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#define CHUNK (256 * 1024)
#define QUEUE_CHUNKS 256

typedef struct chunk {
    struct chunk *next;
    uint64_t due;       // when it may leave (monotonic ns)
    size_t len, off;    // bytes, bytes already sent
    int eof;            // the end of the direction: shut the destination's write side
    int reserved;       // its time on the shared link is taken (capped direction)
    char *data;         // a CHUNK buffer (from the free list)
} chunk;

struct conn;

// One socket of a connection, as epoll's data.
typedef struct endpoint {
    struct conn *c;
    int fd;
    uint32_t events;    // the interest registered now
    int registered;
} endpoint;

// Bytes read from `src`, sent to `dst` half an RTT later.
typedef struct dir {
    endpoint *src, *dst;
    chunk *head, *tail;
    int count;
    int reading;        // src is read (connected, no end seen yet)
    int blocked;        // dst's send buffer is full: waits for EPOLLOUT
    int done;           // its end was sent
    int capped;
} dir;

typedef struct conn {
    endpoint client, upstream;
    uint64_t connect_at;    // when to connect upstream (0: done)
    dir up, down;           // client -> upstream, upstream -> client
    int dead;
    struct conn *next;
} conn;

static int epfd, timerfd_, listener;
static int upstream_port;
static uint64_t half_rtt, rtt;
static double rate;         // bytes/s of the shared downstream link (0: none)
static uint64_t link_free_at;
static conn *conns;
static char *free_buffers[4096];
static int free_count;
static volatile sig_atomic_t stopping;
static endpoint listener_ep, timer_ep;

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void die(const char *what) {
    fprintf(stderr, "latency-proxy: %s: %s\n", what, strerror(errno));
    exit(1);
}

static char *take_buffer(void) {
    if (free_count > 0) return free_buffers[--free_count];
    char *b = malloc(CHUNK);
    if (!b) die("malloc");
    return b;
}

static void give_buffer(char *b) {
    if (free_count < (int)(sizeof free_buffers / sizeof free_buffers[0])) free_buffers[free_count++] = b;
    else free(b);
}

static void set_interest(endpoint *e, uint32_t events) {
    if (e->fd < 0) return;
    if (!e->registered) {
        struct epoll_event ev = {.events = events, .data.ptr = e};
        if (epoll_ctl(epfd, EPOLL_CTL_ADD, e->fd, &ev) != 0) die("epoll_ctl add");
        e->registered = 1;
        e->events = events;
    } else if (e->events != events) {
        struct epoll_event ev = {.events = events, .data.ptr = e};
        if (epoll_ctl(epfd, EPOLL_CTL_MOD, e->fd, &ev) != 0) die("epoll_ctl mod");
        e->events = events;
    }
}

static void push(dir *d, chunk *k) {
    k->next = NULL;
    if (d->tail) d->tail->next = k; else d->head = k;
    d->tail = k;
    d->count++;
}

static void pop(dir *d) {
    chunk *k = d->head;
    d->head = k->next;
    if (!d->head) d->tail = NULL;
    d->count--;
    if (k->data) give_buffer(k->data);
    free(k);
}

static void clear(dir *d) {
    while (d->head) pop(d);
}

// Reads what `d`'s source has (one read); its end (or an error) queues the end.
static void receive(dir *d, uint64_t now) {
    char *b = take_buffer();
    ssize_t n = read(d->src->fd, b, CHUNK);
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
        give_buffer(b);
        return;
    }
    chunk *k = calloc(1, sizeof *k);
    if (!k) die("calloc");
    k->due = now + half_rtt;
    if (n > 0) {
        k->data = b;
        k->len = (size_t)n;
    } else {
        give_buffer(b);
        k->eof = 1;
        d->reading = 0;
    }
    push(d, k);
}

// Sends `d`'s chunks whose time has come, until one is not due, the destination is full, or
// the end was sent. Returns -1 when the destination is gone (the connection ends).
static int flush(dir *d, uint64_t now) {
    while (d->head && !d->done) {
        chunk *k = d->head;
        if (k->due > now) return 0;
        if (k->eof) {
            shutdown(d->dst->fd, SHUT_WR);
            pop(d);
            d->done = 1;
            return 0;
        }
        if (d->capped && rate > 0 && !k->reserved) {
            uint64_t start = now > link_free_at ? now : link_free_at;
            link_free_at = start + (uint64_t)((double)k->len * 1e9 / rate);
            k->due = link_free_at;
            k->reserved = 1;
            continue;
        }
        ssize_t n = send(d->dst->fd, k->data + k->off, k->len - k->off, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0) {
            if (errno == EAGAIN || errno == EINTR) {
                d->blocked = 1;
                return 0;
            }
            return -1;
        }
        k->off += (size_t)n;
        if (k->off < k->len) {
            d->blocked = 1;
            return 0;
        }
        pop(d);
    }
    return 0;
}

static void close_endpoint(endpoint *e) {
    if (e->fd >= 0) close(e->fd);  // also leaves the epoll set
    e->fd = -1;
    e->registered = 0;
}

static void set_nodelay(int fd) {
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

static void connect_upstream(conn *c) {
    c->connect_at = 0;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) die("socket");
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)upstream_port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    // Blocking: a connect on 127.0.0.1 completes at once (or fails: refused).
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        close(fd);
        c->dead = 1;
        return;
    }
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    set_nodelay(fd);
    c->upstream.fd = fd;
    c->up.reading = 1;
    c->down.reading = 1;
}

static void accept_all(void) {
    for (;;) {
        int fd = accept4(listener, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EAGAIN || errno == EINTR || errno == ECONNABORTED) return;
            die("accept");
        }
        set_nodelay(fd);
        conn *c = calloc(1, sizeof *c);
        if (!c) die("calloc");
        c->client = (endpoint){.c = c, .fd = fd};
        c->upstream = (endpoint){.c = c, .fd = -1};
        c->up = (dir){.src = &c->client, .dst = &c->upstream};
        c->down = (dir){.src = &c->upstream, .dst = &c->client, .capped = 1};
        // The handshake of a real link: nothing passes for one RTT (the client's bytes wait
        // in its socket).
        c->connect_at = now_ns() + rtt;
        if (c->connect_at == 0) c->connect_at = 1;
        c->next = conns;
        conns = c;
    }
}

static void on_event(endpoint *e, uint32_t events, uint64_t now) {
    conn *c = e->c;
    if (c->dead) return;
    dir *out = e == &c->client ? &c->up : &c->down;    // e is its source
    dir *in = e == &c->client ? &c->down : &c->up;     // e is its destination
    if (events & EPOLLOUT) in->blocked = 0;
    if ((events & (EPOLLIN | EPOLLHUP | EPOLLERR)) && out->reading) {
        receive(out, now);
    } else if (events & EPOLLERR) {
        c->dead = 1;
    } else if ((events & EPOLLHUP) && !(events & EPOLLOUT)) {
        // Shut both ways and nothing to read: nothing can be delivered to it either.
        if (in->done) {
            if (e->registered) epoll_ctl(epfd, EPOLL_CTL_DEL, e->fd, NULL);
            e->registered = 0;
        } else {
            c->dead = 1;
        }
    }
}

static void on_signal(int sig) {
    (void)sig;
    stopping = 1;
}

int main(int argc, char **argv) {
    if (argc != 4 && argc != 5) {
        fprintf(stderr, "usage: latency-proxy LISTEN_PORT UPSTREAM_PORT RTT_MS [MBYTES_PER_S]\n");
        return 2;
    }
    int listen_port = atoi(argv[1]);
    upstream_port = atoi(argv[2]);
    double rtt_ms = atof(argv[3]);
    if (listen_port < 0 || listen_port > 65535 || upstream_port <= 0 || upstream_port > 65535 || rtt_ms < 0) {
        fprintf(stderr, "latency-proxy: bad arguments\n");
        return 2;
    }
    rtt = (uint64_t)(rtt_ms * 1e6);
    half_rtt = rtt / 2;
    if (argc == 5) rate = atof(argv[4]) * 1e6;

    struct sigaction sa = {.sa_handler = on_signal};
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    listener = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (listener < 0) die("socket");
    int one = 1;
    setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)listen_port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);  // never anything else
    if (bind(listener, (struct sockaddr *)&a, sizeof a) != 0) die("bind");
    if (listen(listener, 256) != 0) die("listen");
    socklen_t len = sizeof a;
    if (getsockname(listener, (struct sockaddr *)&a, &len) != 0) die("getsockname");

    epfd = epoll_create1(EPOLL_CLOEXEC);
    timerfd_ = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    if (epfd < 0 || timerfd_ < 0) die("epoll/timerfd");
    listener_ep = (endpoint){.fd = listener};
    timer_ep = (endpoint){.fd = timerfd_};
    set_interest(&listener_ep, EPOLLIN);
    set_interest(&timer_ep, EPOLLIN);

    printf("listening %d\n", ntohs(a.sin_port));
    fflush(stdout);

    struct epoll_event events[256];
    while (!stopping) {
        uint64_t now = now_ns(), next = 0;
        conn **pp = &conns;
        while (*pp) {
            conn *c = *pp;
            if (!c->dead && c->connect_at && now >= c->connect_at) connect_upstream(c);
            if (!c->dead && !c->connect_at) {
                if ((!c->up.blocked && flush(&c->up, now) < 0) || (!c->down.blocked && flush(&c->down, now) < 0)) c->dead = 1;
            }
            if (c->dead || (c->up.done && c->down.done)) {
                *pp = c->next;
                clear(&c->up);
                clear(&c->down);
                close_endpoint(&c->client);
                close_endpoint(&c->upstream);
                free(c);
                continue;
            }
            // Its next time, and what to wait for on each socket.
            if (c->connect_at && (!next || c->connect_at < next)) next = c->connect_at;
            dir *ds[2] = {&c->up, &c->down};
            for (int i = 0; i < 2; i++) {
                dir *d = ds[i];
                if (d->head && !d->blocked && !d->done && (!next || d->head->due < next)) next = d->head->due;
            }
            if (!c->connect_at) {
                endpoint *es[2] = {&c->client, &c->upstream};
                for (int i = 0; i < 2; i++) {
                    endpoint *e = es[i];
                    dir *out = e == &c->client ? &c->up : &c->down;
                    dir *in = e == &c->client ? &c->down : &c->up;
                    uint32_t want = (out->reading && out->count < QUEUE_CHUNKS ? EPOLLIN : 0) | (in->blocked ? EPOLLOUT : 0);
                    if (e->registered || want) set_interest(e, want);
                }
            }
            pp = &c->next;
        }
        struct itimerspec t = {0};
        if (next) {
            t.it_value.tv_sec = (time_t)(next / 1000000000u);
            t.it_value.tv_nsec = (long)(next % 1000000000u);
        }
        timerfd_settime(timerfd_, TFD_TIMER_ABSTIME, &t, NULL);
        int n = epoll_wait(epfd, events, 256, -1);
        if (n < 0) {
            if (errno == EINTR) continue;
            die("epoll_wait");
        }
        now = now_ns();
        for (int i = 0; i < n; i++) {
            endpoint *e = events[i].data.ptr;
            if (e == &listener_ep) {
                accept_all();
            } else if (e == &timer_ep) {
                uint64_t expirations;
                if (read(timerfd_, &expirations, sizeof expirations) < 0 && errno != EAGAIN) die("timerfd");
            } else {
                on_event(e, events[i].events, now);
            }
        }
    }
    return 0;
}
