# The endpoints (docs/CONTRACT.md): a Puma thread runs each request from start to end, so a worker
# serves as many requests at once as it has threads, and the DB connection is returned to the pool
# before the upstream call.
require "net/http"

module Lab
  ApiError = Contract::ApiError

  # Step 2 on ActiveRecord's pool: DB_POOL_SIZE connections per process, DB_POOL_TIMEOUT_S wait.
  module Store
    SLEEP = "SELECT pg_sleep($1 / 1000.0)".freeze
    INT = ActiveModel::Type::Integer.new(limit: 8)

    def self.pool = ActiveRecord::Base.connection_pool

    def self.user(user_id, db_ms)
      attempts = 0
      begin
        row = query do |conn|
          conn.exec_query(SLEEP, "sleep", [bind("ms", db_ms)]) if db_ms.positive?
          conn.exec_query(Contract::USER_SQL, "user", [bind("user_id", user_id)]).rows.first
        end
      rescue ActiveRecord::ConnectionNotEstablished, ActiveRecord::QueryCanceled, Timeout::Error => e
        # The pool wait, a connection refused or timed out, a statement timeout (the server's, or
        # Store.query's for a server that does not answer): a second try would only fail the same
        # way, later.
        raise unavailable(e)
      rescue ActiveRecord::ActiveRecordError => e
        # A connection the server closed (a restart): it is dropped with the idle ones, which died
        # with it, and step 2 runs once more on a fresh connection.
        pool.flush(0)
        raise unavailable(e) unless (attempts += 1) == 1

        retry
      end
      raise ApiError.new(404, "not_found", "user not found") if row.nil?

      Contract::Summary.new(*row)
    end

    def self.ping = query { |conn| conn.exec_query("SELECT 1") }

    # libpq has no client-side statement timeout, and a stopped server's kernel still acknowledges
    # what is sent, so no TCP timeout fires either (bench faults' pg-hang): the statements of a
    # checkout get DB_TIMEOUT_S here. pg's async_exec waits in Ruby, so Timeout interrupts it, and
    # the connection, its statement unanswered, is dropped below.
    def self.query
      conn = pool.checkout
      begin
        result = Timeout.timeout(SETTINGS[:db_timeout_s]) { yield conn }
      rescue StandardError
        pool.remove(conn)
        conn.disconnect! rescue nil # rubocop:disable Style/RescueModifier
        raise
      end
      pool.checkin(conn)
      result
    end

    def self.bind(name, value) = ActiveRecord::Relation::QueryAttribute.new(name, value, INT)
    def self.unavailable(cause = nil)
      Rails.logger.warn("database unavailable: #{cause.class}: #{cause.message}") if cause # not the client's
      ApiError.new(503, "database_unavailable", "the database is unavailable")
    end
  end

  # Step 3: one keep-alive Net::HTTP connection per Puma thread, UPSTREAM_TIMEOUT_S on every wait.
  module Upstream
    TIMEOUTS = [Timeout::Error].freeze # Net::HTTP's own (OpenTimeout, ReadTimeout...) are among them

    def self.http
      Thread.current[:lab_upstream] ||= begin
        uri, timeout = SETTINGS[:upstream], SETTINGS[:timeout_s]
        Net::HTTP.new(uri.host, uri.port).tap do |h|
          h.open_timeout = h.read_timeout = h.write_timeout = timeout
          h.max_retries = 0
          h.start
        end
      end
    end

    def self.reset
      http = Thread.current[:lab_upstream]
      Thread.current[:lab_upstream] = nil
      http&.finish rescue nil # rubocop:disable Style/RescueModifier
    end

    def self.request(messages, llm_ms, extra = {})
      req = Net::HTTP::Post.new(SETTINGS[:upstream], "Content-Type" => "application/json",
                                                    "X-Mock-Latency-Ms" => llm_ms.to_s)
      req.body = JSON.generate({ model: "gpt-4o-mini", messages: messages, **extra })
      req
    end

    def self.failure(error)
      reset
      Rails.logger.warn("upstream failed: #{error.class}: #{error.message}") # the cause: not the client's
      return error if error.is_a?(ApiError)
      return ApiError.new(504, "upstream_timeout", "the upstream timed out") if TIMEOUTS.any? { error.is_a?(_1) }

      ApiError.new(502, "upstream_error", "the upstream failed")
    end

    def self.complete(messages, llm_ms)
      # One deadline for the whole call: Net::HTTP's read_timeout bounds each read, which a body
      # dribbled a byte at a time never trips. A timeout leaves the connection to failure's reset.
      res = Timeout.timeout(SETTINGS[:timeout_s]) { http.request(request(messages, llm_ms)) }
      raise "the upstream answered #{res.code}" unless res.is_a?(Net::HTTPSuccess)

      JSON.parse(res.body).dig("choices", 0, "message", "content")
    rescue StandardError => e
      raise failure(e)
    end

    def self.timeout?(error) = TIMEOUTS.any? { error.is_a?(_1) }
  end

  # The streamed completion, as the response body. `start` sends the request and returns once the
  # upstream has answered 2xx (else raises the JSON 502/504: nothing is sent yet); `each` then
  # relays each token as the contract's SSE event, ending with [DONE] or the in-band error event.
  # A Fiber holds Net::HTTP's block-scoped response open between the two, on the same Puma thread.
  class SseStream
    Closed = Class.new(StandardError)

    def initialize(messages, llm_ms, tokens)
      body = { stream: true, max_completion_tokens: tokens }
      @started = false
      @fiber = Fiber.new { relay(Upstream.request(messages, llm_ms, body)) }
    end

    def start
      @fiber.resume
      @started = true
      self
    end

    def each
      while (event = @fiber.resume)
        yield event
      end
    ensure
      close
    end

    # The client left (or the body was never sent): unwind the request, drop the connection.
    def close
      @fiber.raise(Closed) if @started && @fiber.alive?
    end

    private

    def relay(request)
      Upstream.http.request(request) do |res|
        raise "the upstream answered #{res.code}" unless res.is_a?(Net::HTTPSuccess)

        Fiber.yield :started
        Fiber.yield(events(res) ? Contract::SSE_DONE : raise("the upstream stream ended without [DONE]"))
      end
      nil
    rescue Closed
      Upstream.reset
      nil
    rescue StandardError => e
      raise Upstream.failure(e) unless @started

      Upstream.reset
      warn "stream failed: #{e.class}: #{e.message}"
      Fiber.yield Contract.sse_error(Upstream.timeout?(e))
      nil
    end

    # Yields each token's event; true once the upstream's [DONE] came.
    def events(res)
      pending = +""
      done = false
      res.read_body do |data|
        pending << data
        while (cut = pending.index("\n\n"))
          pending.slice!(0, cut + 2).each_line(chomp: true) do |line|
            next unless line.start_with?("data: ")

            payload = line.delete_prefix("data: ")
            next done = true if payload == "[DONE]"

            chunk = JSON.parse(payload)
            raise "in-band error from the upstream: #{chunk['error']}" if chunk["error"]

            token = chunk.dig("choices", 0, "delta", "content")
            Fiber.yield Contract.sse_token(token) if token && !token.empty?
          end
        end
      end
      done
    end
  end

  class LabController < ActionController::API
    rescue_from(ApiError) { |e| send_json(e.status, Contract.error_body(e.code, e.message)) }

    def healthz = send_json(200, Contract.compact({ status: "ok" }))

    def readyz
      Store.ping
      send_json(200, Contract.compact({ status: "ready" }))
    rescue ActiveRecord::ActiveRecordError, Timeout::Error
      raise Store.unavailable
    end

    def cpu
      n = Contract.int_param("n", query("n"), 1, 5_000_000, 100_000)
      send_json(200, Contract.compact({ n: n, result: Contract.cpu_sum(n) }))
    end

    def recommendation
      user_id, db_ms, llm_ms = inputs
      summary = Store.user(user_id, db_ms)
      advice = Upstream.complete(Contract.messages(summary), llm_ms)
      send_json(200, Contract.compact(Contract.recommendation(user_id, summary, advice, SETTINGS[:target_name])))
    end

    def stream
      user_id, db_ms, llm_ms = inputs
      tokens = Contract.int_param("tokens", query("tokens"), 1, 1000, 16)
      summary = Store.user(user_id, db_ms)
      body = SseStream.new(Contract.messages(summary), llm_ms, tokens).start
      headers.merge!("Content-Type" => "text/event-stream", "Cache-Control" => "no-cache",
                     "X-Accel-Buffering" => "no")
      self.status = 200
      self.response_body = body
    end

    def user_id_required = Contract.int_param("user_id", "", 1, 2_147_483_647) # the empty user_id: a 400
    def method_not_allowed = raise(ApiError.new(405, "method_not_allowed", "method not allowed"))
    def no_route = raise(ApiError.new(404, "not_found", "no such route"))

    private

    def inputs
      [Contract.int_param("user_id", params[:user_id], 1, 2_147_483_647),
       Contract.int_param("db_ms", query("db_ms"), 0, 5000, SETTINGS[:db_ms]),
       Contract.int_param("llm_ms", query("llm_ms"), 0, 20_000, SETTINGS[:llm_ms])]
    end

    # The last value of a query parameter, as the other targets read it (no Rails nesting: a[]=1).
    def query(name)
      URI.decode_www_form(request.query_string).reverse_each.find { |key, _| key == name }&.last
    rescue ArgumentError
      raise ApiError.new(400, "invalid_parameter", "invalid request") # a malformed query string
    end

    def send_json(status, body)
      headers["Content-Type"] = "application/json"
      headers["Content-Length"] = body.bytesize.to_s
      self.status = status
      self.response_body = body
    end
  end
end
