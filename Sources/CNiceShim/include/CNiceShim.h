// A small C layer over libnice and GLib for Swift: one GLib thread per loop, one agent with one
// stream and one component, plain-field candidates, and C callbacks that forward every signal to
// one function with a context pointer.
//
// The header uses plain C types only (no GLib), so Swift sees nothing but this API.
//
// Threading: `cns_loop_new`, `cns_loop_post`, `cns_loop_stop` and `cns_loop_is_current` may be
// called from any thread. Every other function must run on the loop's thread (inside a function
// given to `cns_loop_post` or `cns_loop_timer`, or inside a callback of the agent).
#ifndef CNICESHIM_H
#define CNICESHIM_H

#include <stdint.h>
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

// MARK: - Loop

/// A private GMainContext and GMainLoop running on their own GThread.
typedef struct cns_loop cns_loop;

/// A function run on the loop's thread with its data.
typedef void (*cns_func)(void *_Nullable data);

/// Starts a thread named `name` running a new GMainContext (as its thread-default context).
/// NULL when the thread cannot be started.
cns_loop *_Nullable cns_loop_new(const char *_Nonnull name);

/// Stops the loop once every function posted before has run, then frees it. Waits for the thread
/// to end unless called on the loop's own thread. The loop must not be used afterwards.
void cns_loop_stop(cns_loop *_Nonnull loop);

/// True when the calling thread is the loop's thread.
int cns_loop_is_current(cns_loop *_Nonnull loop);

/// Runs `fn(data)` on the loop's thread, always later (never inside the caller, even on the
/// loop's thread); functions posted from one thread run in the order they were posted.
/// `destroy(data)` follows once `fn` ran, or when the loop stops before running it.
void cns_loop_post(cns_loop *_Nonnull loop, cns_func _Nonnull fn, void *_Nullable data,
                   cns_func _Nullable destroy);

/// Runs `fn(data)` once on the loop's thread after `ms` milliseconds; `destroy(data)` follows
/// (also when cancelled). Returns an id for `cns_loop_cancel`.
unsigned cns_loop_timer(cns_loop *_Nonnull loop, unsigned ms, cns_func _Nonnull fn,
                        void *_Nullable data, cns_func _Nullable destroy);

/// Cancels a timer that has not fired yet (on the loop's thread).
void cns_loop_cancel(cns_loop *_Nonnull loop, unsigned timer);

// MARK: - Candidates

/// The values of NiceCandidateType.
enum {
    CNS_CANDIDATE_HOST = 0,
    CNS_CANDIDATE_SRFLX = 1,
    CNS_CANDIDATE_PRFLX = 2,
    CNS_CANDIDATE_RELAY = 3,
};

/// The values of NiceCandidateTransport.
enum {
    CNS_TRANSPORT_UDP = 0,
    CNS_TRANSPORT_TCP_ACTIVE = 1,
    CNS_TRANSPORT_TCP_PASSIVE = 2,
    CNS_TRANSPORT_TCP_SO = 3,
};

/// The values of NiceRelayType.
enum {
    CNS_RELAY_TURN_UDP = 0,
    CNS_RELAY_TURN_TCP = 1,
    CNS_RELAY_TURN_TLS = 2,
};

/// The values of NiceComponentState.
enum {
    CNS_STATE_DISCONNECTED = 0,
    CNS_STATE_GATHERING = 1,
    CNS_STATE_CONNECTING = 2,
    CNS_STATE_CONNECTED = 3,
    CNS_STATE_READY = 4,
    CNS_STATE_FAILED = 5,
};

#define CNS_ADDRESS_LENGTH 64
#define CNS_FOUNDATION_LENGTH 33

/// A NiceCandidate as plain fields. Addresses are numeric strings (no port).
typedef struct cns_candidate {
    int type;
    int transport;
    char address[CNS_ADDRESS_LENGTH];
    unsigned port;
    /// Set when the base differs from the address (srflx, prflx, relay); empty otherwise.
    int has_base;
    char base_address[CNS_ADDRESS_LENGTH];
    unsigned base_port;
    uint32_t priority;
    unsigned component;
    char foundation[CNS_FOUNDATION_LENGTH];
} cns_candidate;

// MARK: - Agent

/// One libnice agent with one stream of one component.
typedef struct cns_agent cns_agent;

typedef struct cns_agent_config {
    int controlling;
    /// A numeric IPv4 address, or NULL for no STUN server.
    const char *_Nullable stun_server;
    unsigned stun_server_port;
    unsigned stun_initial_timeout_ms;
    unsigned stun_max_retransmissions;
    int consent_freshness;
    int ice_tcp;
    int keepalive_conncheck;
} cns_agent_config;

/// What a signal reported.
enum {
    /// `state` holds the new component state.
    CNS_EVENT_STATE = 1,
    /// `local` holds the new local candidate.
    CNS_EVENT_LOCAL_CANDIDATE = 2,
    CNS_EVENT_GATHERING_DONE = 3,
    /// `local` and `remote` hold the selected pair.
    CNS_EVENT_SELECTED_PAIR = 4,
};

/// Receives every signal of an agent on the loop's thread. The candidates live only during the call.
typedef void (*cns_event_func)(void *_Nullable context, int kind, int state,
                               const cns_candidate *_Nullable local,
                               const cns_candidate *_Nullable remote);

/// Receives every datagram of an agent on the loop's thread. The bytes live only during the call.
typedef void (*cns_recv_func)(void *_Nullable context, const uint8_t *_Nullable bytes, size_t length);

/// A new agent (RFC 5245 compatibility, trickle; consent freshness as configured) with its stream,
/// the given local credentials, its signal handlers and its receive callback. NULL on failure.
cns_agent *_Nullable cns_agent_new(cns_loop *_Nonnull loop, const cns_agent_config *_Nonnull config,
                                   const char *_Nonnull ufrag, const char *_Nonnull pwd,
                                   cns_event_func _Nonnull on_event, cns_recv_func _Nonnull on_recv,
                                   void *_Nullable context);

/// Restricts gathering to this numeric local address (call before gathering; repeatable).
/// Without any, libnice uses every running interface except loopback. 0 when refused.
int cns_agent_add_local_address(cns_agent *_Nonnull agent, const char *_Nonnull address);

/// Adds a TURN server (numeric address; call before gathering). 0 when refused.
int cns_agent_add_relay(cns_agent *_Nonnull agent, const char *_Nonnull server, unsigned port,
                        const char *_Nonnull username, const char *_Nonnull password, int relay_type);

/// Starts gathering. 0 when libnice refuses (for example: no running interface yet).
int cns_agent_gather(cns_agent *_Nonnull agent);

/// 0 when refused.
int cns_agent_set_remote_credentials(cns_agent *_Nonnull agent, const char *_Nonnull ufrag,
                                     const char *_Nonnull pwd);

/// Adds one remote candidate. 1 when added, 0 when libnice did not take it, -1 when the fields
/// are invalid.
int cns_agent_add_remote_candidate(cns_agent *_Nonnull agent, const cns_candidate *_Nonnull candidate);

/// Sends one datagram on the selected pair: the number of bytes sent, or a negative value.
int cns_agent_send(cns_agent *_Nonnull agent, const uint8_t *_Nullable bytes, size_t length);

/// Disconnects the signal handlers and the receive callback (no callback follows), closes the
/// agent asynchronously (TURN allocations are released), unrefs it once closed, frees `agent`
/// and then calls `done(data)` on the loop's thread. Never call this inside one of the agent's
/// own callbacks: post it instead.
void cns_agent_close(cns_agent *_Nonnull agent, cns_func _Nonnull done, void *_Nullable data);

#ifdef __cplusplus
}
#endif

#endif
