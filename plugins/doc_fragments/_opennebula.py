# Copyright: opennebula.flower contributors
# Apache License 2.0 (see LICENSE)
#
# Note that this doc fragment is **PRIVATE** to the collection. It can have breaking changes at
# any time. Do not use this from other collections or standalone plugins/modules!


class ModuleDocFragment:
    # Connection options shared by every module of the opennebula.flower.opennebula action group,
    # so that one module_defaults entry for the group can hold them.
    DOCUMENTATION = r"""
options:
  oneflow_url:
    description:
      - Base URL of the OneFlow server, for example V(http://frontend:2474).
      - If not set, the value of the environment variable E(ONEFLOW_URL) is used.
    type: str
  oneflow_username:
    description:
      - User for OneFlow's HTTP Basic authentication.
      - "Precedence: this option, O(one_username), E(ONEFLOW_USERNAME), E(ONE_USERNAME), then the
        auth file (see O(one_auth_file)) when neither a username nor a password was found."
    type: str
  oneflow_password:
    description:
      - Password (or login token) for OneFlow.
      - "Precedence: this option, O(one_password), E(ONEFLOW_PASSWORD), E(ONE_PASSWORD), then the
        auth file."
    type: str
  one_url:
    description:
      - URL of oned's XML-RPC endpoint, for example V(http://frontend:2633/RPC2).
      - If not set, the value of the environment variable E(ONE_URL) is used.
      - Modules that read VM details (IPs, C(READY), published keys) from oned need it and the
        Python library C(pyone); OneGate and OneFlow calls do not.
    type: str
  one_username:
    description:
      - oned user. If not set, E(ONE_USERNAME) is used; also the OneFlow user when no
        OneFlow-specific one is given.
    type: str
  one_password:
    description:
      - oned password or login token. If not set, E(ONE_PASSWORD) is used; also the OneFlow password
        when no OneFlow-specific one is given.
    type: str
  one_auth_file:
    description:
      - File holding C(username:password) on its first line (the format of C(~/.one/one_auth)); the
        line is split on the first C(:) only, so passwords and tokens may contain C(:).
      - Read only when neither a username nor a password was found in the options and the
        environment.
      - If not set, E(ONE_AUTH) is used, then C(~/.one/one_auth) if it exists.
    type: path
  validate_certs:
    description:
      - Verify the TLS certificates of OneFlow, OneGate and oned (HTTPS endpoints).
      - Applies to the XML-RPC calls too (passed to pyone as C(https_verify)).
    type: bool
    default: true
  ca_path:
    description:
      - PEM file with the CA certificate(s) used to verify the servers' certificates, instead of the
        system trust store. Applies to OneFlow, OneGate and oned.
    type: path
  request_timeout:
    description:
      - Timeout in seconds of a single HTTP request.
    type: int
    default: 30
  retries:
    description:
      - How many times a request is retried after a connection error or a 5xx answer, waiting 1, 2,
        4... seconds (capped at 30) in between.
      - Only what is safe to repeat is retried. Idempotent requests (GET, PUT, DELETE) are retried
        on every 5xx and connection error. POST requests (instantiate, scale, actions, template
        create) only when the connection failed before anything was sent (refused, unknown host,
        no route); after a 5xx (502/503/504 included) or a lost answer the server may have acted,
        so C(oneflow_service) (instantiate, scale) and C(oneflow_template) (create) look at what
        exists, and send the request again only when they find nothing and the answer was lost or
        a proxy's 502/503/504, at most O(retries) times. TLS verification failures are never
        retried.
    type: int
    default: 3
notes:
  - All modules of the C(opennebula.flower.opennebula) action group accept these connection options,
    so they can be set once with C(module_defaults) for C(group/opennebula.flower.opennebula). A
    module that does not talk to one of the services ignores its options.
  - The OneGate options (C(onegate_endpoint), C(onegate_token) and the like) belong to the OneGate
    modules only, so give them in C(module_defaults) under those modules' names, not the group.
  - Errors from the servers are reported with the HTTP method, URL, status and the server's own
    message.
"""
