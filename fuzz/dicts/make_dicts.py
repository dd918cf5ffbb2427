# regenerates fuzz/dicts/*.dict (run from fuzz/dicts/)
common = ['"', '{', '}', '[', ']', ':', ',', 'null', 'true', 'false', '-1', '0', '1', '2', '65536', '4294967296', '1e309', '-0', '1.5', 'NaN', 'Infinity']
kinds = ["embedding","masking","simple_rnn","lstm","gru","dense","activation","last_step","forward","reverse","bidirectional","concat","sum","mul","ave","none","zero","hold","tanh","relu","sigmoid","softmax","log_softmax","linear","hard_sigmoid","hard_sigmoid_tf2","gelu","swish"]
native_keys = ["__metadata__","format","fastrnn","fastrnn_format_version","spec","dtype","F32","U8","F16","shape","data_offsets","__pad__.","layers","kind","name","input_size","units","activation","recurrent_activation","reset_after","proj_size","direction","merge_mode","return_sequences","mask_mode","tensors","input_features","takes_ids","source","metadata","mask_value","mask_zero","weight","bias","embeddings","forward.w_ih","forward.w_hh","forward.b_ih","forward.b_hh","forward.w_hr","backward.w_ih","backward.w_hh","backward.b_ih","backward.b_hh"]
keras_keys = ["class_name","config","module","keras.layers","registered_name","layers","name","units","activation","recurrent_activation","use_bias","return_sequences","return_state","go_backwards","stateful","unroll","reset_after","dropout","recurrent_dropout","layer","forward_layer","backward_layer","merge_mode","mask_zero","input_dim","output_dim","mask_value","batch_shape","batch_input_shape","dtype","float32","int32","Sequential","Functional","InputLayer","LSTM","GRU","SimpleRNN","Bidirectional","TimeDistributed","Dense","Embedding","Masking","Dropout","Activation","Flatten","Lambda","inbound_nodes","input_layers","output_layers","keras_version","build_config","input_shape","data_format","implementation","time_major","cell"]
torch = ["collections","OrderedDict","torch._utils","_rebuild_tensor_v2","_rebuild_tensor","_rebuild_parameter","torch._tensor","_rebuild_from_type_v2","torch","FloatStorage","HalfStorage","BFloat16Storage","DoubleStorage","LongStorage","BoolStorage","ComplexFloatStorage","torch.nn.parameter","Parameter","Tensor","storage","cpu","cuda:0","weight_ih_l0","weight_hh_l0","bias_ih_l0","bias_hh_l0","_reverse","weight_hr_l0","state_dict","model_state_dict","module.","archive/data.pkl","archive/data/0","byteorder","little","big","data.pkl","os","system","builtins","eval","__main__","code/","constants.pkl"]
raw_bytes = [b"PK\x03\x04", b"PK\x01\x02", b"PK\x05\x06", b"\x80\x02", b"\x80\x04", b"\x80\x05", b"\x95", b"c", b"\x93", b"R", b"b", b"s", b"u", b"t", b"(", b"K", b"J", b"M", b"\x8a\x08", b"X", b"\x8c", b"h", b"q", b"r", b"Q", b"]", b"}", b")", b"\x85", b"\x86", b"\x87", b"N", b"\x88", b"\x89", b"G", b".", b"\x94", b"0", b"1", b"2", b"e", b"a", b"l", b"d", b"\xff\xff\xff\x7f", b"\x00\x00\x00\x80"]
def enc(t):
    if isinstance(t, str):
        t = t.encode()
    out = ""
    for c in t:
        if c == 0x22 or c == 0x5c or c < 0x20 or c >= 0x7f:
            out += "\\x%02x" % c
        else:
            out += chr(c)
    return out
def write(fn, toks):
    with open(fn, "w") as f:
        f.write("# libFuzzer dictionary (also read by the fallback fuzzer in fuzz/run.py)\n")
        for i, t in enumerate(dict.fromkeys(toks)):
            f.write('k%d="%s"\n' % (i, enc(t)))
write("native.dict", common + kinds + native_keys + ['\\"%s\\"' % k for k in native_keys[:20] + kinds])
write("keras_zip.dict", common + kinds + keras_keys)
write("torch_file.dict", [t.encode() for t in torch] + raw_bytes)
h5 = [b"\x89HDF\r\n\x1a\n", b"TREE", b"HEAP", b"SNOD", b"OHDR", b"OCHK", b"GCOL", b"FRHP", b"FSHD", b"FSSE", b"BTHD",
      b"BTLF", b"BTIN", b"FHDB", b"FHIB", b"SMTB", b"SMLI", b"\xff\xff\xff\xff\xff\xff\xff\xff", b"\x00\x00\x00\x00\x00\x00\x00\x00",
      b"\x01\x00\x00\x00", b"\xff\xff\xff\x7f", b"\x00\x00\x00\x80", b"\x00\x10\x00\x00", b"\x00\x00\x01\x00",
      "model_weights", "model_config", "layer_names", "weight_names", "keras_version", "backend", "training_config",
      "layers", "vars", "cell", "forward_layer", "backward_layer", "kernel:0", "recurrent_kernel:0", "bias:0",
      "lstm", "dense", "gru", "0", "1", "2"]
write("h5.dict", [t.encode() if isinstance(t, str) else t for t in h5])
