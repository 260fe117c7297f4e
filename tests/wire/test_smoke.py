import wire


def test_list_request_decodes():
    decoder = wire.RequestDecoder()
    decoder.receive_data(b"LIST\r\n\r\n")
    assert decoder.next_event() == wire.Command("LIST")
    assert decoder.next_event() is wire.NEED_DATA
