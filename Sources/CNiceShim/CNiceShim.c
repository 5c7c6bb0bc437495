// The C layer over libnice and GLib described in include/CNiceShim.h.
#include "CNiceShim.h"

#include <glib.h>
#include <glib-object.h>
#include <gio/gio.h>
#include <nice/agent.h>
#include <string.h>

// MARK: - Loop

struct cns_loop {
    GMainContext *context;
    GMainLoop *loop;
    GThread *thread;
};

static gpointer cns_loop_thread(gpointer data) {
    cns_loop *loop = data;
    g_main_context_push_thread_default(loop->context);
    g_main_loop_run(loop->loop);
    // Sources still attached (functions posted after the stop) are destroyed with the context,
    // which calls their destroy functions.
    g_main_context_pop_thread_default(loop->context);
    g_main_loop_unref(loop->loop);
    g_main_context_unref(loop->context);
    g_free(loop);
    return NULL;
}

cns_loop *cns_loop_new(const char *name) {
    cns_loop *loop = g_new0(cns_loop, 1);
    loop->context = g_main_context_new();
    loop->loop = g_main_loop_new(loop->context, FALSE);
    GError *error = NULL;
    loop->thread = g_thread_try_new(name, cns_loop_thread, loop, &error);
    if (loop->thread == NULL) {
        g_clear_error(&error);
        g_main_loop_unref(loop->loop);
        g_main_context_unref(loop->context);
        g_free(loop);
        return NULL;
    }
    return loop;
}

typedef struct {
    cns_func fn;
    void *data;
    cns_func destroy;
} cns_call;

static gboolean cns_call_run(gpointer data) {
    cns_call *call = data;
    call->fn(call->data);
    return G_SOURCE_REMOVE;
}

static void cns_call_free(gpointer data) {
    cns_call *call = data;
    if (call->destroy != NULL) {
        call->destroy(call->data);
    }
    g_free(call);
}

static guint cns_attach(cns_loop *loop, GSource *source, cns_func fn, void *data, cns_func destroy) {
    cns_call *call = g_new0(cns_call, 1);
    call->fn = fn;
    call->data = data;
    call->destroy = destroy;
    g_source_set_priority(source, G_PRIORITY_DEFAULT);
    g_source_set_callback(source, cns_call_run, call, cns_call_free);
    guint id = g_source_attach(source, loop->context);
    g_source_unref(source);
    return id;
}

void cns_loop_post(cns_loop *loop, cns_func fn, void *data, cns_func destroy) {
    // An idle source rather than g_main_context_invoke_full: invoke runs the function at once
    // when the caller already owns the context, which would run agent calls inside libnice's own
    // signal emissions. Idle sources of one priority are dispatched in the order attached.
    cns_attach(loop, g_idle_source_new(), fn, data, destroy);
}

unsigned cns_loop_timer(cns_loop *loop, unsigned ms, cns_func fn, void *data, cns_func destroy) {
    return cns_attach(loop, g_timeout_source_new(ms), fn, data, destroy);
}

void cns_loop_cancel(cns_loop *loop, unsigned timer) {
    GSource *source = g_main_context_find_source_by_id(loop->context, timer);
    if (source != NULL) {
        g_source_destroy(source);
    }
}

int cns_loop_is_current(cns_loop *loop) {
    return g_main_context_is_owner(loop->context) ? 1 : 0;
}

static void cns_loop_quit(void *data) {
    g_main_loop_quit(((cns_loop *)data)->loop);
}

void cns_loop_stop(cns_loop *loop) {
    GThread *thread = loop->thread;
    int current = cns_loop_is_current(loop);
    // Quitting through a posted function (not g_main_loop_quit here) also works when the thread
    // has not entered g_main_loop_run yet, and lets every function posted before run first.
    // After this the loop's thread owns and frees `loop`.
    cns_loop_post(loop, cns_loop_quit, loop, NULL);
    if (current) {
        g_thread_unref(thread);
    } else {
        g_thread_join(thread);
    }
}

// MARK: - Candidates

static void cns_candidate_from_nice(const NiceCandidate *nice, cns_candidate *out) {
    memset(out, 0, sizeof *out);
    out->type = (int)nice->type;
    out->transport = (int)nice->transport;
    // NICE_ADDRESS_STRING_LEN (INET6_ADDRSTRLEN) fits in CNS_ADDRESS_LENGTH.
    nice_address_to_string(&nice->addr, out->address);
    out->port = nice_address_get_port(&nice->addr);
    if (nice_address_is_valid(&nice->base_addr) && !nice_address_equal(&nice->addr, &nice->base_addr)) {
        out->has_base = 1;
        nice_address_to_string(&nice->base_addr, out->base_address);
        out->base_port = nice_address_get_port(&nice->base_addr);
    }
    out->priority = nice->priority;
    out->component = nice->component_id;
    g_strlcpy(out->foundation, nice->foundation, sizeof out->foundation);
}

// MARK: - Agent

struct cns_agent {
    NiceAgent *agent;
    guint stream;
    cns_loop *loop;
    cns_event_func on_event;
    cns_recv_func on_recv;
    void *context;
    cns_func done;
    void *done_data;
};

enum { CNS_COMPONENT = 1 };

static void cns_on_state(NiceAgent *agent, guint stream, guint component, guint state, gpointer data) {
    (void)agent;
    cns_agent *a = data;
    if (stream != a->stream || component != CNS_COMPONENT) {
        return;
    }
    a->on_event(a->context, CNS_EVENT_STATE, (int)state, NULL, NULL);
}

static void cns_on_candidate(NiceAgent *agent, NiceCandidate *candidate, gpointer data) {
    (void)agent;
    cns_agent *a = data;
    if (candidate == NULL || candidate->stream_id != a->stream) {
        return;
    }
    cns_candidate local;
    cns_candidate_from_nice(candidate, &local);
    a->on_event(a->context, CNS_EVENT_LOCAL_CANDIDATE, 0, &local, NULL);
}

static void cns_on_gathering_done(NiceAgent *agent, guint stream, gpointer data) {
    (void)agent;
    cns_agent *a = data;
    if (stream != a->stream) {
        return;
    }
    a->on_event(a->context, CNS_EVENT_GATHERING_DONE, 0, NULL, NULL);
}

static void cns_on_selected_pair(NiceAgent *agent, guint stream, guint component, NiceCandidate *lcand,
                                 NiceCandidate *rcand, gpointer data) {
    (void)agent;
    cns_agent *a = data;
    if (stream != a->stream || component != CNS_COMPONENT || lcand == NULL || rcand == NULL) {
        return;
    }
    cns_candidate local, remote;
    cns_candidate_from_nice(lcand, &local);
    cns_candidate_from_nice(rcand, &remote);
    a->on_event(a->context, CNS_EVENT_SELECTED_PAIR, 0, &local, &remote);
}

static void cns_on_recv(NiceAgent *agent, guint stream, guint component, guint len, gchar *buf, gpointer data) {
    (void)agent;
    (void)stream;
    (void)component;
    cns_agent *a = data;
    a->on_recv(a->context, (const uint8_t *)buf, (size_t)len);
}

cns_agent *cns_agent_new(cns_loop *loop, const cns_agent_config *config, const char *ufrag, const char *pwd,
                         cns_event_func on_event, cns_recv_func on_recv, void *context) {
    NiceAgentOption options = NICE_AGENT_OPTION_ICE_TRICKLE;
    if (config->consent_freshness) {
        options |= NICE_AGENT_OPTION_CONSENT_FRESHNESS;
    }
    NiceAgent *agent = nice_agent_new_full(loop->context, NICE_COMPATIBILITY_RFC5245, options);
    if (agent == NULL) {
        return NULL;
    }
    // Every property explicitly: controlling-mode defaults to TRUE, upnp to TRUE (SSDP multicast)
    // and ice-tcp to TRUE (which forces regular nomination).
    g_object_set(agent,
                 "controlling-mode", config->controlling ? TRUE : FALSE,
                 "upnp", FALSE,
                 "ice-tcp", config->ice_tcp ? TRUE : FALSE,
                 "ice-udp", TRUE,
                 "stun-initial-timeout", (guint)config->stun_initial_timeout_ms,
                 "stun-max-retransmissions", (guint)config->stun_max_retransmissions,
                 "keepalive-conncheck", config->keepalive_conncheck ? TRUE : FALSE,
                 NULL);
    if (config->stun_server != NULL) {
        g_object_set(agent,
                     "stun-server", config->stun_server,
                     "stun-server-port", (guint)config->stun_server_port,
                     NULL);
    }
    guint stream = nice_agent_add_stream(agent, CNS_COMPONENT);
    if (stream == 0 || !nice_agent_set_local_credentials(agent, stream, ufrag, pwd)) {
        g_object_unref(agent);
        return NULL;
    }
    cns_agent *a = g_new0(cns_agent, 1);
    a->agent = agent;
    a->stream = stream;
    a->loop = loop;
    a->on_event = on_event;
    a->on_recv = on_recv;
    a->context = context;
    g_signal_connect(agent, "component-state-changed", G_CALLBACK(cns_on_state), a);
    g_signal_connect(agent, "new-candidate-full", G_CALLBACK(cns_on_candidate), a);
    g_signal_connect(agent, "candidate-gathering-done", G_CALLBACK(cns_on_gathering_done), a);
    g_signal_connect(agent, "new-selected-pair-full", G_CALLBACK(cns_on_selected_pair), a);
    nice_agent_attach_recv(agent, stream, CNS_COMPONENT, loop->context, cns_on_recv, a);
    return a;
}

int cns_agent_add_local_address(cns_agent *a, const char *address) {
    NiceAddress addr;
    nice_address_init(&addr);
    if (!nice_address_set_from_string(&addr, address)) {
        return 0;
    }
    return nice_agent_add_local_address(a->agent, &addr) ? 1 : 0;
}

int cns_agent_add_relay(cns_agent *a, const char *server, unsigned port, const char *username,
                        const char *password, int relay_type) {
    if (relay_type < CNS_RELAY_TURN_UDP || relay_type > CNS_RELAY_TURN_TLS) {
        return 0;
    }
    return nice_agent_set_relay_info(a->agent, a->stream, CNS_COMPONENT, server, port, username, password,
                                     (NiceRelayType)relay_type) ? 1 : 0;
}

int cns_agent_gather(cns_agent *a) {
    return nice_agent_gather_candidates(a->agent, a->stream) ? 1 : 0;
}

int cns_agent_set_remote_credentials(cns_agent *a, const char *ufrag, const char *pwd) {
    return nice_agent_set_remote_credentials(a->agent, a->stream, ufrag, pwd) ? 1 : 0;
}

int cns_agent_add_remote_candidate(cns_agent *a, const cns_candidate *c) {
    if (c->type < CNS_CANDIDATE_HOST || c->type > CNS_CANDIDATE_RELAY ||
        c->transport < CNS_TRANSPORT_UDP || c->transport > CNS_TRANSPORT_TCP_SO ||
        c->port > 65535 || c->component != CNS_COMPONENT ||
        memchr(c->foundation, 0, sizeof c->foundation) == NULL ||
        memchr(c->address, 0, sizeof c->address) == NULL) {
        return -1;
    }
    NiceCandidate *nice = nice_candidate_new((NiceCandidateType)c->type);
    nice->transport = (NiceCandidateTransport)c->transport;
    nice->stream_id = a->stream;
    nice->component_id = CNS_COMPONENT;
    nice->priority = c->priority;
    g_strlcpy(nice->foundation, c->foundation, sizeof nice->foundation);
    if (!nice_address_set_from_string(&nice->addr, c->address)) {
        nice_candidate_free(nice);
        return -1;
    }
    nice_address_set_port(&nice->addr, c->port);
    if (c->has_base) {
        if (memchr(c->base_address, 0, sizeof c->base_address) == NULL || c->base_port > 65535 ||
            !nice_address_set_from_string(&nice->base_addr, c->base_address)) {
            nice_candidate_free(nice);
            return -1;
        }
        nice_address_set_port(&nice->base_addr, c->base_port);
    }
    GSList *list = g_slist_append(NULL, nice);
    int added = nice_agent_set_remote_candidates(a->agent, a->stream, CNS_COMPONENT, list);
    g_slist_free(list);
    nice_candidate_free(nice);
    return added > 0 ? 1 : 0;
}

int cns_agent_send(cns_agent *a, const uint8_t *bytes, size_t length) {
    if (length > G_MAXUINT) {
        return -1;
    }
    return nice_agent_send(a->agent, a->stream, CNS_COMPONENT, (guint)length, (const gchar *)bytes);
}

static void cns_on_closed(GObject *source, GAsyncResult *result, gpointer data) {
    (void)source;
    (void)result;
    cns_agent *a = data;
    g_object_unref(a->agent);
    cns_func done = a->done;
    void *done_data = a->done_data;
    g_free(a);
    done(done_data);
}

void cns_agent_close(cns_agent *a, cns_func done, void *data) {
    a->done = done;
    a->done_data = data;
    g_signal_handlers_disconnect_by_data(a->agent, a);
    nice_agent_attach_recv(a->agent, a->stream, CNS_COMPONENT, a->loop->context, NULL, NULL);
    nice_agent_close_async(a->agent, cns_on_closed, a);
}
