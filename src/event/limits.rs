/// Bounds on the events of one request.
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_events_per_request: usize,
    pub max_message_bytes: usize,
    pub max_scope_bytes: usize,
    /// For `sessionId` and `requestId`.
    pub max_id_bytes: usize,
    pub max_context_bytes: usize,
    /// Keys counted over every nested object of one event's context.
    pub max_context_keys: usize,
    pub max_context_depth: usize,
}
