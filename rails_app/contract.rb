# What docs/CONTRACT.md pins down, as pure functions: validation, the SQL, the prompt, the JSON wire
# forms, the /cpu sum. lab_controller.rb only wires these to Rails, ActiveRecord and Net::HTTP.
require "json"

module Lab
  module Contract
    class ApiError < StandardError
      attr_reader :status, :code

      def initialize(status, code, message)
        super(message)
        @status = status
        @code = code
      end
    end

    INT_RE = /\A-?[0-9]+\z/

    # text (nil = absent) -> integer in lo..hi, or ApiError 400 with the contract's message
    def self.int_param(name, text, lo, hi, default = nil)
      return default if text.nil?

      value = Integer(text, 10) if INT_RE.match?(text)
      return value if value&.between?(lo, hi)

      raise ApiError.new(400, "invalid_parameter", "#{name} must be an integer in #{lo}..#{hi}")
    end

    # One wire form: compact, non-ASCII as is, nothing HTML-escaped (JSON.generate's defaults).
    def self.compact(obj) = JSON.generate(obj)
    def self.error_body(code, message) = compact({ error: { code: code, message: message } })

    # Python's json.dumps default form of one string: ensure_ascii (\uXXXX, surrogate pairs).
    def self.py_string(text)
      JSON.generate(text).gsub(/[^\x00-\x7f]/) do |char|
        char.encode("UTF-16BE").unpack("n*").map { |unit| format("\\u%04x", unit) }.join
      end
    end

    def self.sse_token(token) = "data: {\"token\": #{py_string(token)}}\n\n"
    SSE_DONE = "data: [DONE]\n\n".freeze

    def self.sse_error(timeout)
      code, message = timeout ? %w[upstream_timeout the\ upstream\ stream\ timed\ out]
                              : %w[upstream_error the\ upstream\ stream\ failed]
      "event: error\ndata: {\"error\": {\"code\": #{py_string(code)}, \"message\": #{py_string(message)}}}\n\n"
    end

    USER_SQL = <<~SQL.chomp.freeze
      WITH recent AS (
          SELECT amount_cents, category FROM transactions
          WHERE user_id = $1 ORDER BY created_at DESC, id DESC LIMIT 20)
      SELECT u.name, u.monthly_budget_cents,
             (SELECT count(*) FROM recent)::int,
             (SELECT coalesce(sum(amount_cents), 0) FROM recent)::bigint,
             (SELECT category FROM recent GROUP BY category
              ORDER BY sum(amount_cents) DESC, category ASC LIMIT 1)
      FROM users u WHERE u.id = $1
    SQL

    Summary = Struct.new(:name, :budget_cents, :transactions, :spent_cents, :top_category)

    def self.prompt(s)
      "#{s.name} spent #{s.spent_cents} of a #{s.budget_cents} cent budget over " \
        "#{s.transactions} transactions; top category: #{s.top_category || 'none'}. One tip?"
    end

    def self.messages(s)
      [{ role: "system", content: "You are a concise personal-finance assistant." },
       { role: "user", content: prompt(s) }]
    end

    def self.recommendation(user_id, s, advice, served_by)
      { user_id: user_id, name: s.name, budget_cents: s.budget_cents, spent_cents: s.spent_cents,
        transactions: s.transactions, top_category: s.top_category, advice: advice, served_by: served_by }
    end

    def self.cpu_sum(n) = (0...n).sum { |i| Integer.sqrt(i) }

    STATUS_CODES = { 400 => %w[invalid_parameter invalid\ request], 404 => %w[not_found no\ such\ route],
                     405 => %w[method_not_allowed method\ not\ allowed] }.freeze

    # Rails' exceptions_app: what the router or a middleware raised, in the uniform error shape.
    def self.exceptions_app(env)
      status = ActionDispatch::ExceptionWrapper.status_code_for_exception(
        env["action_dispatch.exception"].class.name)
      code, message = STATUS_CODES.fetch(status, %w[internal_error internal\ server\ error])
      status = 500 unless STATUS_CODES.key?(status)
      [status, { "Content-Type" => "application/json" }, [error_body(code, message)]]
    end
  end
end
