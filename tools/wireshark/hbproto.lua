-- Wireshark / tshark dissector for hbproto version 1 (SPEC.md), over UDP and TCP.
--
-- Load it for one run:    tshark -X lua_script:tools/wireshark/hbproto.lua -r capture.pcap
-- or for good:            copy it into Wireshark's personal Lua plugins folder
--                         (Help > About Wireshark > Folders; tshark -G folders).
--
-- It decodes every field and TLV of SPEC.md sections 4 and 5, verifies the CRC-32 (4.5), and
-- marks a frame that a receiver would discard with an expert-info error naming the first of
-- the receive checks V-1 to V-8 (section 7) that fails, together with its drop counter. Checks
-- V-9 to V-14 depend on session state and are not judged here. See docs/wireshark.md.

local fmt = string.format

local VERSION = 1
local DEFAULT_PORT = 7373 -- SPEC 11.1: the port the reference tools use in their examples
local FIXED_SIZE = 24
local CRC_SIZE = 4
local MIN_FRAME = FIXED_SIZE + CRC_SIZE
local UDP_MAX_FRAME = 1200 -- [HB-UDP-2]
local TLV_HEADER_SIZE = 3
local PIGGYBACK_MAX = 128 -- [HB-TLV-4]
local CLOSE_TEXT_MAX = 123 -- [HB-TLV-5]
local AUTH_VALUE_SIZE = 17 -- [HB-TLV-6]: Key ID and a 16-byte MAC
local MULT_MASK, POLL_BIT, FINAL_BIT = 0x0F, 0x20, 0x10
local NO_PREFERENCE = 0xFFFF
local PT_TCP = 2 -- Wireshark's port_type of a TCP packet (pinfo.port_type)

local HEARTBEAT, ACK, DATA, CLOSE = 1, 2, 3, 4
local ST_CLOSED, ST_DOWN, ST_UP = 0, 1, 3
local TLV_PAYLOAD, TLV_CLOSE_TEXT, TLV_AUTH, TLV_CRITICAL = 0x01, 0x02, 0x80, 0x80

local frame_types = { [HEARTBEAT] = "HEARTBEAT", [ACK] = "ACK", [DATA] = "DATA", [CLOSE] = "CLOSE" }
local states = { [0] = "CLOSED", [1] = "DOWN", [2] = "INIT", [3] = "UP" }
local tlv_types = {
    [TLV_PAYLOAD] = "PAYLOAD",
    [TLV_CLOSE_TEXT] = "CLOSE_TEXT",
    [TLV_AUTH] = "AUTH",
}
local close_reasons = {
    [0] = "unspecified",
    [1] = "shutdown",
    [2] = "timeout",
    [3] = "too_frequent",
    [4] = "auth_failure",
    [5] = "protocol_error",
    [6] = "restart",
    [7] = "refused",
}
local units = { [0] = "10 us", [1] = "1 ms", [2] = "100 ms", [3] = "10 s" }
local unit_us = { [0] = 10, [1] = 1000, [2] = 100000, [3] = 10000000 }
local checksum_status = { [0] = "Bad", [1] = "Good", [2] = "Unverified" }

local hb = Proto("hbproto", "hbproto heartbeat protocol")

local f = hb.fields
f.version = ProtoField.uint8("hbproto.version", "Version", base.DEC, nil, 0xF0)
f.type = ProtoField.uint8("hbproto.type", "Type", base.DEC, frame_types, 0x0F)
f.state = ProtoField.uint8("hbproto.state", "State", base.DEC, states, 0xC0)
f.flags = ProtoField.uint8("hbproto.flags", "Flags", base.HEX, nil, POLL_BIT + FINAL_BIT)
f.poll = ProtoField.bool("hbproto.flags.poll", "Poll (P)", 8, nil, POLL_BIT)
f.final = ProtoField.bool("hbproto.flags.final", "Final (F)", 8, nil, FINAL_BIT)
f.mult = ProtoField.uint8("hbproto.mult", "Detection Multiplier", base.DEC, nil, MULT_MASK)
f.length = ProtoField.uint16("hbproto.length", "Length", base.DEC)
f.my_id = ProtoField.uint32("hbproto.my_id", "My Identifier", base.HEX)
f.your_id = ProtoField.uint32("hbproto.your_id", "Your Identifier", base.HEX)
f.seq = ProtoField.uint32("hbproto.seq", "Sequence Number", base.DEC)
f.timestamp = ProtoField.uint32("hbproto.timestamp", "Timestamp", base.HEX)
f.echo_seq = ProtoField.uint32("hbproto.echo.seq", "Echoed Sequence Number", base.DEC)
f.echo_timestamp = ProtoField.uint32("hbproto.echo.timestamp", "Echoed Timestamp", base.HEX)
f.close_reason = ProtoField.uint32("hbproto.close.reason", "Close Reason", base.DEC)
f.close_reason_name = ProtoField.string("hbproto.close.reason_name", "Close Reason Name")
local interval_fields = {}
local interval_names = {
    desired_tx = "Desired TX Interval",
    required_rx = "Required Min RX Interval",
}
for key, name in pairs(interval_names) do
    local abbr = "hbproto." .. key
    interval_fields[key] = {
        name = name,
        code = ProtoField.uint16(abbr, name, base.HEX),
        unit = ProtoField.uint16(abbr .. ".unit", "Unit", base.DEC, units, 0xC000),
        count = ProtoField.uint16(abbr .. ".count", "Count", base.DEC, nil, 0x3FFF),
        us = ProtoField.uint64(abbr .. ".us", name .. " (microseconds)", base.DEC),
    }
    for part, field in pairs(interval_fields[key]) do
        if part ~= "name" then
            f[key .. "_" .. part] = field
        end
    end
end
f.tlv = ProtoField.bytes("hbproto.tlv", "TLV", base.NONE)
f.tlv_type = ProtoField.uint8("hbproto.tlv.type", "Type", base.HEX, tlv_types)
f.tlv_critical = ProtoField.bool("hbproto.tlv.critical", "Critical", 8, nil, TLV_CRITICAL)
f.tlv_length = ProtoField.uint16("hbproto.tlv.length", "Value Length", base.DEC)
f.tlv_value = ProtoField.bytes("hbproto.tlv.value", "Value")
f.payload = ProtoField.bytes("hbproto.payload", "Payload")
f.close_text = ProtoField.string("hbproto.close.text", "Close Text", base.UNICODE)
f.auth_key_id = ProtoField.uint8("hbproto.auth.key_id", "Key ID", base.DEC)
f.auth_mac = ProtoField.bytes("hbproto.auth.mac", "MAC")
f.crc = ProtoField.uint32("hbproto.crc", "CRC-32", base.HEX)
f.crc_computed = ProtoField.uint32("hbproto.crc.computed", "Computed CRC-32", base.HEX)
f.crc_status = ProtoField.uint8("hbproto.crc.status", "CRC-32 Status", base.DEC, checksum_status)
f.check = ProtoField.string("hbproto.check", "Failed receive check")

-- One expert field per receive check (SPEC section 7, Table 6), named by check and counter.
local ex, check_label = {}, {}
local function receive_check(key, check, counter, group)
    local abbr = fmt("hbproto.%s.%s", check:lower():gsub("-", ""), counter)
    ex[key] = ProtoExpert.new(abbr, check .. " " .. counter, group, expert.severity.ERROR)
    check_label[ex[key]] = check .. " " .. counter
end
receive_check("v1_truncated", "V-1", "truncated", expert.group.MALFORMED)
receive_check("v1_bad_version", "V-1", "bad_version", expert.group.MALFORMED)
receive_check("v2_truncated", "V-2", "truncated", expert.group.MALFORMED)
receive_check("v3_too_large", "V-3", "too_large", expert.group.MALFORMED)
receive_check("v4_bad_length", "V-4", "bad_length", expert.group.MALFORMED)
receive_check("v5_bad_checksum", "V-5", "bad_checksum", expert.group.CHECKSUM)
receive_check("v6_unknown_type", "V-6", "unknown_type", expert.group.PROTOCOL)
receive_check("v7_bad_field", "V-7", "bad_field", expert.group.PROTOCOL)
receive_check("v8_bad_tlv", "V-8", "bad_tlv", expert.group.MALFORMED)
ex.tcp_unframeable = ProtoExpert.new(
    "hbproto.tcp.unframeable",
    "HB-TCP-3: the stream cannot be framed any further",
    expert.group.MALFORMED,
    expert.severity.ERROR
)
ex.udp_oversize = ProtoExpert.new(
    "hbproto.udp.oversize",
    "HB-UDP-2: a frame over 1200 bytes on UDP",
    expert.group.PROTOCOL,
    expert.severity.WARN
)
ex.noncanonical = ProtoExpert.new(
    "hbproto.interval.noncanonical",
    "HB-FRAME-14: interval code is not canonical",
    expert.group.PROTOCOL,
    expert.severity.WARN
)
ex.unknown_tlv = ProtoExpert.new(
    "hbproto.tlv.unknown",
    "HB-TLV-2: unknown non-critical TLV, ignored by receivers",
    expert.group.UNDECODED,
    expert.severity.NOTE
)
ex.unknown_reason = ProtoExpert.new(
    "hbproto.close.unknown_reason",
    "HB-CLOSE-4: unknown close reason, treated as unspecified",
    expert.group.PROTOCOL,
    expert.severity.NOTE
)
local all_experts = {}
for _, e in pairs(ex) do
    all_experts[#all_experts + 1] = e
end
hb.experts = all_experts

hb.prefs.port = Pref.uint("UDP and TCP port", DEFAULT_PORT, "Port decoded as hbproto (0: none)")
hb.prefs.udp_max_frame = Pref.uint(
    "Largest UDP frame accepted (V-3)",
    UDP_MAX_FRAME,
    "The receiver's maximum frame size on UDP: a larger datagram fails check V-3 "
        .. "(SPEC.md: at least 1200 bytes)"
)

-- --- Helpers --------------------------------------------------------------------------------

-- LuaBitOp's "bit" is in every Wireshark with Lua, whatever its Lua version (5.4 has no
-- bit32). Its results are signed 32-bit numbers; u32 makes them the unsigned values on the wire.
local band, bxor, rshift = bit.band, bit.bxor, bit.rshift
local function u32(x)
    return x % 0x100000000
end

-- CRC-32 of ISO-HDLC / IEEE 802.3 (SPEC 4.5): reflected polynomial 0xEDB88320.
local crc_table = {}
for i = 0, 255 do
    local c = i
    for _ = 1, 8 do
        if band(c, 1) == 1 then
            c = bxor(0xEDB88320, rshift(c, 1))
        else
            c = rshift(c, 1)
        end
    end
    crc_table[i] = c
end

local function crc32(s)
    local crc = 0xFFFFFFFF
    local byte = string.byte
    for i = 1, #s do
        crc = bxor(crc_table[band(bxor(crc, byte(s, i)), 0xFF)], rshift(crc, 8))
    end
    return u32(bxor(crc, 0xFFFFFFFF))
end

-- Well-formed UTF-8 as RFC 3629 defines it (no overlong forms, no surrogates, <= U+10FFFF).
local function is_utf8(s)
    local i, n = 1, #s
    local byte = string.byte
    while i <= n do
        local c = byte(s, i)
        local need, lo, hi = 0, 0x80, 0xBF
        if c < 0x80 then
            need = 0
        elseif c >= 0xC2 and c <= 0xDF then
            need = 1
        elseif c == 0xE0 then
            need, lo = 2, 0xA0
        elseif c == 0xED then
            need, hi = 2, 0x9F
        elseif c >= 0xE1 and c <= 0xEF then
            need = 2
        elseif c == 0xF0 then
            need, lo = 3, 0x90
        elseif c == 0xF4 then
            need, hi = 3, 0x8F
        elseif c >= 0xF1 and c <= 0xF3 then
            need = 3
        else
            return false
        end
        if i + need > n then
            return false
        end
        for k = 1, need do
            local cc = byte(s, i + k)
            if k == 1 and (cc < lo or cc > hi) then
                return false
            end
            if cc < 0x80 or cc > 0xBF then
                return false
            end
        end
        i = i + need + 1
    end
    return true
end

local function trim(number_text)
    return (number_text:gsub("(%..-)0+$", "%1"):gsub("%.$", ""))
end

-- An interval in human units: 50 ms, 3.3 ms, 16.383 s, 300 s (5.0 min).
local function human(us)
    if us < 1000 then
        return fmt("%d us", us)
    elseif us < 1000000 then
        return trim(fmt("%.2f", us / 1000)) .. " ms"
    end
    local text = trim(fmt("%.3f", us / 1e6)) .. " s"
    if us >= 3600e6 then
        text = text .. fmt(" (%.1f h)", us / 3600e6)
    elseif us >= 60e6 then
        text = text .. fmt(" (%.1f min)", us / 60e6)
    end
    return text
end

-- Microseconds of an interval code (SPEC 4.4), nil for "no preference".
local function interval_us(code)
    if code == NO_PREFERENCE then
        return nil
    end
    return band(code, 0x3FFF) * unit_us[rshift(code, 14)]
end

-- The canonical code of an interval [HB-FRAME-14]: the finest unit whose rounded-up count fits.
local function canonical_code(us)
    for u = 0, 3 do
        local count = math.ceil(us / unit_us[u])
        if count <= (u < 3 and 0x3FFF or 0x3FFE) then
            return u * 0x4000 + count
        end
    end
end

local function close_reason_text(code)
    local name = close_reasons[code]
    if name then
        return name
    elseif code >= 0x80000000 then
        return "private use (treated as unspecified)"
    end
    return "unassigned (treated as unspecified)"
end

-- --- Receive validation (SPEC section 7, checks V-1 to V-8) ------------------------------------
-- A frame is the bytes of one datagram (UDP) or what the stream's Length cut (TCP). Each check
-- returns the first failure as {expert, offset, length, detail}; the dissector shows one.

-- The TLV area [24, last) parsed as far as it goes: a list of {type, offset, length}, and the
-- structural error (HB-TLV-1) that stopped it, if any.
local function parse_tlvs(tvb, last)
    local tlvs, pos = {}, FIXED_SIZE
    while pos < last do
        local left = last - pos
        if left < TLV_HEADER_SIZE then
            local detail = fmt("%d stray bytes where a TLV header should be [HB-TLV-1]", left)
            return tlvs, { pos, left, detail }
        end
        local t, len = tvb(pos, 1):uint(), tvb(pos + 1, 2):uint()
        if len > left - TLV_HEADER_SIZE then
            local remain = left - TLV_HEADER_SIZE
            local detail = fmt("TLV 0x%02x claims %d bytes, %d remain [HB-TLV-1]", t, len, remain)
            return tlvs, { pos, left, detail }
        end
        tlvs[#tlvs + 1] = { type = t, offset = pos, length = len }
        pos = pos + TLV_HEADER_SIZE + len
    end
    return tlvs, nil
end

-- Check V-8's rules on TLVs that parsed, in the order the reference codec applies them.
local function check_tlv_rules(tvb, ftype, tlvs)
    local seen = {}
    for index, tlv in ipairs(tlvs) do
        local t, len = tlv.type, tlv.length
        local function bad(detail)
            return { tlv.offset, TLV_HEADER_SIZE + len, detail }
        end
        if seen[t] and tlv_types[t] then
            return bad(fmt("TLV 0x%02x appears twice [HB-TLV-7]", t))
        end
        seen[t] = true
        if t == TLV_PAYLOAD then
            if ftype == CLOSE then
                return bad("PAYLOAD TLV in a CLOSE frame [HB-TLV-4]")
            end
            if ftype ~= DATA and len > PIGGYBACK_MAX then
                return bad(fmt("piggyback of %d bytes > %d [HB-TLV-4]", len, PIGGYBACK_MAX))
            end
        elseif t == TLV_CLOSE_TEXT then
            if ftype ~= CLOSE then
                return bad(fmt("CLOSE_TEXT TLV in a %s frame [HB-TLV-5]", frame_types[ftype]))
            end
            if len > CLOSE_TEXT_MAX then
                return bad(fmt("CLOSE_TEXT of %d bytes > %d [HB-TLV-5]", len, CLOSE_TEXT_MAX))
            end
            if len > 0 and not is_utf8(tvb:raw(tlv.offset + TLV_HEADER_SIZE, len)) then
                return bad("CLOSE_TEXT is not well-formed UTF-8 [HB-TLV-5]")
            end
        elseif t == TLV_AUTH then
            if index ~= #tlvs then
                return bad("AUTH TLV is not the last TLV [HB-TLV-6]")
            end
            if len ~= AUTH_VALUE_SIZE then
                return bad(fmt("AUTH value is %d bytes, not %d [HB-TLV-6]", len, AUTH_VALUE_SIZE))
            end
        elseif band(t, TLV_CRITICAL) ~= 0 then
            return bad(fmt("unknown critical TLV 0x%02x [HB-TLV-3]", t))
        end
    end
    if ftype == DATA and not seen[TLV_PAYLOAD] then
        return { FIXED_SIZE, 0, "DATA frame without a PAYLOAD TLV [HB-TLV-4]" }
    end
    return nil
end

-- Check V-7, in the SPEC's order.
local function check_fields(h)
    local tname = frame_types[h.ftype]
    if h.mult == 0 then
        return { 1, 1, "detect multiplier is 0 [HB-FRAME-6]" }
    end
    if (h.ftype == CLOSE) ~= (h.state == ST_CLOSED) then
        return { 1, 1, fmt("%s frame with state %s [HB-FRAME-4]", tname, states[h.state]) }
    end
    if h.ftype == DATA and h.state ~= ST_UP then
        return { 1, 1, fmt("DATA frame with state %s [HB-FRAME-4]", states[h.state]) }
    end
    if h.poll and h.ftype ~= HEARTBEAT then
        return { 1, 1, fmt("P flag on a %s frame [HB-FRAME-5]", tname) }
    end
    if h.final and h.ftype ~= ACK then
        return { 1, 1, fmt("F flag on a %s frame [HB-FRAME-5]", tname) }
    end
    if h.my_id == 0 then
        return { 4, 4, "My Identifier is 0 [HB-FRAME-8]" }
    end
    if h.your_id == 0 and not (h.ftype == HEARTBEAT and h.state == ST_DOWN) then
        local detail = "Your Identifier is 0 in a %s frame with state %s [HB-FRAME-8]"
        return { 8, 4, fmt(detail, tname, states[h.state]) }
    end
    if interval_us(h.tx_code) == 0 then
        return { 20, 2, "Desired TX Interval is 0 [HB-FRAME-11]" }
    end
    return nil
end

-- The first failing check of V-1 to V-8 for the frame in tvb, as {expert, offset, length,
-- detail}, or nil when the frame passes them all.
local function first_failure(tvb, transport, h)
    local n = tvb:reported_len()
    if n == 0 then
        return { ex.v1_truncated, 0, 0, "empty frame" }
    end
    if h.version ~= VERSION then
        local detail = fmt("version %d, not %d [HB-FRAME-2]", h.version, VERSION)
        return { ex.v1_bad_version, 0, 1, detail }
    end
    if n < MIN_FRAME then
        return { ex.v2_truncated, 0, n, fmt("%d bytes, a frame has at least %d", n, MIN_FRAME) }
    end
    local limit = hb.prefs.udp_max_frame
    if transport == "udp" and n > limit then
        local detail = fmt("%d bytes > this receiver's limit of %d [HB-RX-3]", n, limit)
        return { ex.v3_too_large, 0, n, detail }
    end
    if h.length ~= n then
        local detail = fmt("Length says %d, %d bytes received [HB-FRAME-7]", h.length, n)
        return { ex.v4_bad_length, 2, 2, detail }
    end
    if h.crc_ok == nil then
        return nil -- the capture cut the frame short: the rest cannot be judged
    end
    if not h.crc_ok then
        return {
            ex.v5_bad_checksum,
            n - CRC_SIZE,
            CRC_SIZE,
            fmt("trailer 0x%08x, computed 0x%08x [HB-FRAME-12]", h.crc, h.crc_computed),
        }
    end
    if not frame_types[h.ftype] then
        return { ex.v6_unknown_type, 0, 1, fmt("type %d [HB-FRAME-3]", h.ftype) }
    end
    local field = check_fields(h)
    if field then
        return { ex.v7_bad_field, field[1], field[2], field[3] }
    end
    local tlv = h.tlv_error or check_tlv_rules(tvb, h.ftype, h.tlvs)
    if tlv then
        return { ex.v8_bad_tlv, tlv[1], tlv[2], tlv[3] }
    end
    return nil
end

-- --- Display ----------------------------------------------------------------------------------

local function add_interval(tree, tvb, offset, key)
    local spec = interval_fields[key]
    local code = tvb(offset, 2):uint()
    local us = interval_us(code)
    local text
    if us == nil then
        text = "no preference"
    elseif us == 0 then
        text = key == "desired_tx" and "0 (invalid)" or "0 (no periodic HEARTBEATs)"
    else
        text = human(us)
    end
    local label = fmt("%s: %s (0x%04x)", spec.name, text, code)
    local item = tree:add(spec.code, tvb(offset, 2), code, label)
    item:add(spec.unit, tvb(offset, 2))
    item:add(spec.count, tvb(offset, 2))
    if us ~= nil then
        item:add(spec.us, tvb(offset, 2), UInt64(us)):set_generated()
        local canonical = canonical_code(us)
        if code ~= canonical then
            local detail = "%s code 0x%04x is not canonical: %s is 0x%04x [HB-FRAME-14]"
            item:add_tvb_expert_info(
                ex.noncanonical,
                tvb(offset, 2),
                fmt(detail, spec.name, code, human(us), canonical)
            )
        end
    end
    return text
end

local function add_tlv(tree, tvb, tlv)
    local t, len, off = tlv.type, tlv.length, tlv.offset
    local name = tlv_types[t] or (band(t, TLV_CRITICAL) ~= 0 and "unknown critical" or "unknown")
    local vrange = tvb(off + TLV_HEADER_SIZE, len)
    local subtree = tree:add(f.tlv, tvb(off, TLV_HEADER_SIZE + len))
    subtree:set_text(fmt("TLV %s (0x%02x), %d bytes", name, t, len))
    subtree:add(f.tlv_type, tvb(off, 1))
    subtree:add(f.tlv_critical, tvb(off, 1))
    subtree:add(f.tlv_length, tvb(off + 1, 2))
    local value, label
    if t == TLV_PAYLOAD then
        value, label = subtree:add(f.payload, vrange), "Payload"
    elseif t == TLV_CLOSE_TEXT then
        value, label = subtree:add_packet_field(f.close_text, vrange, ENC_UTF_8), "Close Text"
    elseif t == TLV_AUTH and len >= 1 then
        subtree:add(f.auth_key_id, tvb(off + TLV_HEADER_SIZE, 1))
        subtree:add(f.auth_mac, tvb(off + TLV_HEADER_SIZE + 1, len - 1))
    else
        value, label = subtree:add(f.tlv_value, vrange), "Value"
    end
    if value and len == 0 then
        value:set_text(label .. ": (empty)")
    end
    if not tlv_types[t] and band(t, TLV_CRITICAL) == 0 then
        local detail = fmt("unknown non-critical TLV 0x%02x, ignored by receivers [HB-TLV-2]", t)
        subtree:add_proto_expert_info(ex.unknown_tlv, detail)
    end
    return name
end

-- Reads what the header and trailer hold, never past the bytes present.
local function read_frame(tvb)
    local n = tvb:reported_len()
    local avail = tvb:len()
    local h = { n = n }
    if avail >= 1 then
        local b0 = tvb(0, 1):uint()
        h.version, h.ftype = rshift(b0, 4), band(b0, 0x0F)
    end
    if avail >= 2 then
        local b1 = tvb(1, 1):uint()
        h.state, h.mult = rshift(b1, 6), band(b1, MULT_MASK)
        h.poll, h.final = band(b1, POLL_BIT) ~= 0, band(b1, FINAL_BIT) ~= 0
    end
    if avail >= 4 then
        h.length = tvb(2, 2):uint()
    end
    if avail >= FIXED_SIZE then
        h.my_id, h.your_id = tvb(4, 4):uint(), tvb(8, 4):uint()
        h.seq, h.timestamp = tvb(12, 4):uint(), tvb(16, 4):uint()
        h.tx_code, h.rx_code = tvb(20, 2):uint(), tvb(22, 2):uint()
    end
    if n >= MIN_FRAME then
        h.crc = tvb(n - CRC_SIZE, CRC_SIZE):uint()
        if avail == n then -- a frame cut short by the capture's snapshot length stays unverified
            h.crc_computed = crc32(tvb:raw(0, n - CRC_SIZE))
            h.crc_ok = h.crc_computed == h.crc
        end
        h.tlvs, h.tlv_error = parse_tlvs(tvb, n - CRC_SIZE)
    else
        h.tlvs = {}
    end
    return h
end

local info_parts -- the Info column's pieces for the packet being dissected (several on TCP)

local function dissect_frame(tvb, pinfo, root, transport)
    local h = read_frame(tvb)
    local n, avail = h.n, tvb:len()
    local tree = root:add(hb, tvb())
    local summary = {}

    if avail >= 1 then
        tree:add(f.version, tvb(0, 1))
        tree:add(f.type, tvb(0, 1))
        summary[#summary + 1] = frame_types[h.ftype] or fmt("type %d", h.ftype)
    end
    if avail >= 2 then
        tree:add(f.state, tvb(1, 1))
        local flags = {}
        if h.poll then
            flags[#flags + 1] = "P"
        end
        if h.final then
            flags[#flags + 1] = "F"
        end
        local flag_names = #flags > 0 and table.concat(flags, ", ") or "none"
        local flag_item = tree:add(f.flags, tvb(1, 1))
        flag_item:set_text("Flags: " .. flag_names)
        flag_item:add(f.poll, tvb(1, 1))
        flag_item:add(f.final, tvb(1, 1))
        tree:add(f.mult, tvb(1, 1))
        summary[#summary + 1] = states[h.state] .. (#flags > 0 and " [" .. flag_names .. "]" or "")
    end
    if avail >= 4 then
        tree:add(f.length, tvb(2, 2))
    end
    if avail >= FIXED_SIZE then
        tree:add(f.my_id, tvb(4, 4))
        tree:add(f.your_id, tvb(8, 4))
        summary[#summary + 1] = fmt("My=0x%08x Your=0x%08x", h.my_id, h.your_id)
        if h.ftype == ACK then
            tree:add(f.echo_seq, tvb(12, 4))
            tree:add(f.echo_timestamp, tvb(16, 4))
            summary[#summary + 1] = fmt("Echo Seq=%d", h.seq)
        elseif h.ftype == CLOSE then
            tree:add(f.seq, tvb(12, 4))
            local code, known = h.timestamp, close_reasons[h.timestamp]
            local reason = close_reason_text(code)
            tree:add(f.close_reason, tvb(16, 4), code, fmt("Close Reason: %s (%d)", reason, code))
            tree:add(f.close_reason_name, tvb(16, 4), known or "unspecified"):set_generated()
            if not known then
                local detail = fmt("close reason %d is %s [HB-CLOSE-4]", code, reason)
                tree:add_proto_expert_info(ex.unknown_reason, detail)
            end
            summary[#summary + 1] = fmt("Seq=%d Reason=%s", h.seq, known or code)
        else
            tree:add(f.seq, tvb(12, 4))
            tree:add(f.timestamp, tvb(16, 4))
            summary[#summary + 1] = fmt("Seq=%d", h.seq)
        end
        local d = add_interval(tree, tvb, 20, "desired_tx")
        local r = add_interval(tree, tvb, 22, "required_rx")
        summary[#summary + 1] = fmt("D=%s R=%s Mult=%d", d, r, h.mult)
    end
    if n >= MIN_FRAME then
        for _, tlv in ipairs(h.tlvs) do
            local name = add_tlv(tree, tvb, tlv)
            if tlv.type == TLV_PAYLOAD or tlv.type == TLV_AUTH then
                summary[#summary + 1] = fmt("%s(%d)", name, tlv.length)
            end
        end
        if h.tlv_error then
            local e = h.tlv_error
            tree:add(tvb(e[1], e[2]), fmt("Undecodable TLV bytes (%d)", e[2]))
        end
        local trailer = tvb(n - CRC_SIZE, CRC_SIZE)
        local crc_item = tree:add(f.crc, trailer)
        if h.crc_ok == nil then
            crc_item:append_text(" [unverified]")
            crc_item:add(f.crc_status, trailer, 2):set_generated()
        elseif h.crc_ok then
            crc_item:append_text(" [correct]")
        else
            crc_item:append_text(fmt(" [incorrect, should be 0x%08x]", h.crc_computed))
        end
        if h.crc_ok ~= nil then
            crc_item:add(f.crc_computed, trailer, h.crc_computed):set_generated()
            crc_item:add(f.crc_status, trailer, h.crc_ok and 1 or 0):set_generated()
        end
    end

    local failure = first_failure(tvb, transport, h)
    local text = table.concat(summary, " ")
    tree:set_text("hbproto, " .. (text ~= "" and text or "empty"))
    if failure then
        local e, off, len, detail = failure[1], failure[2], failure[3], failure[4]
        local label = check_label[e]
        tree:add(f.check, label):set_generated()
        local range = (len > 0 and off + len <= avail) and tvb(off, len) or tvb()
        tree:add_tvb_expert_info(e, range, fmt("%s: %s", label, detail))
        tree:append_text(" [" .. label .. "]")
        text = "[" .. label .. "] " .. text
    end
    if transport == "udp" and failure == nil and n > UDP_MAX_FRAME then
        local detail = fmt("%d bytes on UDP; senders stay within %d [HB-UDP-2]", n, UDP_MAX_FRAME)
        tree:add_proto_expert_info(ex.udp_oversize, detail)
    end
    info_parts[#info_parts + 1] = text
    pinfo.cols.protocol = "HBPROTO"
    pinfo.cols.info = table.concat(info_parts, " | ")
    return n
end

-- --- UDP: one frame per datagram [HB-UDP-1] ----------------------------------------------------

local function dissect_udp(tvb, pinfo, tree)
    info_parts = {}
    return dissect_frame(tvb, pinfo, tree, "udp")
end

-- --- TCP: frames back to back, delimited by Length [HB-TCP-1], [HB-TCP-3] ----------------------

local function unframeable(tvb, pinfo, root, version, length)
    local tree = root:add(hb, tvb())
    tree:set_text("hbproto, unframeable stream bytes")
    if version ~= VERSION then
        tree:add(f.version, tvb(0, 1))
        tree:add(f.check, "V-1 bad_version"):set_generated()
        local detail = fmt("V-1 bad_version: version %d, not %d [HB-FRAME-2]", version, VERSION)
        tree:add_tvb_expert_info(ex.v1_bad_version, tvb(0, 1), detail)
    else
        tree:add(f.length, tvb(2, 2))
    end
    local detail = "HB-TCP-3: version %d, Length %d: the stream cannot be framed any further; "
        .. "a receiver closes the connection"
    tree:add_tvb_expert_info(ex.tcp_unframeable, tvb(), fmt(detail, version, length))
    info_parts[#info_parts + 1] = "[HB-TCP-3] unframeable stream bytes"
    pinfo.cols.protocol = "HBPROTO"
    pinfo.cols.info = table.concat(info_parts, " | ")
    return tvb:len()
end

local function tcp_header(tvb, offset)
    return rshift(tvb(offset, 1):uint(), 4), tvb(offset + 2, 2):uint()
end

-- The frame's length from its header. A header that cannot start a frame (Ver not 1, Length
-- under 28) ends framing: the rest of the segment is handed over whole and marked. Length is 16
-- bits, so reassembly never waits for more than one 65535-byte frame, the SPEC's largest.
local function tcp_pdu_length(tvb, _, offset)
    local version, length = tcp_header(tvb, offset)
    if version ~= VERSION or length < MIN_FRAME then
        return tvb:reported_length_remaining(offset)
    end
    return length
end

local function tcp_pdu(tvb, pinfo, tree)
    local version, length = tcp_header(tvb, 0)
    if version ~= VERSION or length < MIN_FRAME then
        return unframeable(tvb, pinfo, tree, version, length)
    end
    return dissect_frame(tvb, pinfo, tree, "tcp")
end

local function dissect_tcp(tvb, pinfo, tree)
    info_parts = {}
    dissect_tcp_pdus(tvb, tree, 4, tcp_pdu_length, tcp_pdu)
    return tvb:len()
end

function hb.dissector(tvb, pinfo, tree)
    if pinfo.port_type == PT_TCP then
        return dissect_tcp(tvb, pinfo, tree)
    end
    return dissect_udp(tvb, pinfo, tree)
end

-- --- Registration -------------------------------------------------------------------------

local udp_table = DissectorTable.get("udp.port")
local tcp_table = DissectorTable.get("tcp.port")
udp_table:add_for_decode_as(hb)
tcp_table:add_for_decode_as(hb)

local registered_port = 0
local function register_port(port)
    if registered_port ~= 0 then
        udp_table:remove(registered_port, hb)
        tcp_table:remove(registered_port, hb)
    end
    if port ~= 0 then
        udp_table:add(port, hb)
        tcp_table:add(port, hb)
    end
    registered_port = port
end
register_port(DEFAULT_PORT)

function hb.prefs_changed()
    if hb.prefs.port ~= registered_port then
        register_port(hb.prefs.port)
    end
end

-- Whether tvb holds, at offset, a frame of size bytes that passes V-1, V-4, V-5 and V-6:
-- version 1, a known type, a Length equal to its size and a matching CRC-32. Random bytes do
-- so with a chance of 2^-54.
local function plausible_frame(tvb, offset, size)
    if size < MIN_FRAME or tvb:len() < offset + size then
        return false
    end
    local b0 = tvb(offset, 1):uint()
    if rshift(b0, 4) ~= VERSION or not frame_types[band(b0, 0x0F)] then
        return false
    end
    if tvb(offset + 2, 2):uint() ~= size then
        return false
    end
    return crc32(tvb:raw(offset, size - CRC_SIZE)) == tvb(offset + size - CRC_SIZE, CRC_SIZE):uint()
end

-- Heuristics for traffic on other ports (the demo's ephemeral ones): a datagram that is one
-- whole frame, or a TCP segment that starts with one. The conversation is then hbproto's, so
-- later packets of it, invalid frames included, are decoded too.
hb:register_heuristic("udp", function(tvb, pinfo, tree)
    if not plausible_frame(tvb, 0, tvb:reported_len()) then
        return false
    end
    pinfo.conversation = hb
    dissect_udp(tvb, pinfo, tree)
    return true
end)

hb:register_heuristic("tcp", function(tvb, pinfo, tree)
    if tvb:len() < MIN_FRAME or not plausible_frame(tvb, 0, tvb(2, 2):uint()) then
        return false
    end
    pinfo.conversation = hb
    dissect_tcp(tvb, pinfo, tree)
    return true
end)
